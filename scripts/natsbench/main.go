// natsbench: the NATS side of scripts/bench-peers.sh.
//
// It runs Tern's 1:1 chat load against a nats-server: U users (one connection each) in pairs
// (2i, 2i+1); user u subscribes to its own subject chat.<u>; message k is published by user
// k % U to its partner's subject, at a fixed total rate (message k is due at start + k/R, open
// loop: nothing waits for anything before the next publish).
//
//   - mode core: plain NATS publish/subscribe (no persistence, at-most-once).
//   - mode jetstream: a file-backed stream CHAT on chat.>; each publish carries a reply subject
//     acks.<u>.<k>, so the server answers it with a PubAck once the message is stored (this is
//     the JetStream publish protocol, the same thing js.PublishAsync does, done by hand so that
//     one handler per connection times every ack); each user receives through an ordered push
//     consumer filtered on its subject.
//
// Every message carries its number k and the instant it was actually published (nanoseconds
// since start); latency runs from that publish to arrival (deliver) or to its PubAck (ack). The
// lateness of the publish against its due time is reported as dispatch_lag (Go's timers on this
// machine wake up ~0.1-1 ms late, so stamping the due time would measure the driver's timer).
//
// Counted: sent, delivered (unique), duplicates, lost (sent but never received after the grace
// period), misrouted, acked and ack errors. The server's CPU time (utime + stime from
// /proc/<pid>/stat) is read at the edges of the measured window, as tern-loadgen does.
//
// Prints one JSON object (stdout, and -json FILE).
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

type summary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func summarize(v []float64) summary {
	if len(v) == 0 {
		return summary{}
	}
	sort.Float64s(v)
	at := func(q float64) float64 { return v[int(math.Ceil(q*float64(len(v))))-1] }
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return summary{Count: uint64(len(v)), P50: at(0.5), P99: at(0.99), P999: at(0.999), Max: v[len(v)-1], Mean: sum / float64(len(v))}
}

// ticks per second of /proc/<pid>/stat (CLK_TCK; 100 on every common Linux).
const clkTck = 100.0

func procCPU(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clkTck, nil
}

// machineBusy: busy CPU-seconds of all CPUs since boot (user nice system irq softirq).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(line)
	v := func(i int) float64 {
		if i >= len(f) {
			return 0
		}
		x, _ := strconv.ParseFloat(f[i], 64)
		return x
	}
	return (v(1) + v(2) + v(3) + v(6) + v(7)) / clkTck
}

type recorder struct {
	mu   sync.Mutex
	vals []float64
}

func (r *recorder) add(us float64) {
	r.mu.Lock()
	r.vals = append(r.vals, us)
	r.mu.Unlock()
}

type report struct {
	Peer            string             `json:"peer"`
	Mode            string             `json:"mode"`
	URL             string             `json:"url"`
	ServerVersion   string             `json:"server_version"`
	ServerNote      string             `json:"server_note,omitempty"`
	Users           int                `json:"users"`
	Pairs           int                `json:"pairs"`
	RateTarget      float64            `json:"rate_target_per_s"`
	PayloadBytes    int                `json:"payload_bytes"`
	WarmupS         float64            `json:"warmup_s"`
	DurationS       float64            `json:"duration_s"`
	Sent            uint64             `json:"sent"`
	Delivered       uint64             `json:"delivered"`
	Duplicates      uint64             `json:"duplicates"`
	Lost            uint64             `json:"lost"`
	Misrouted       uint64             `json:"misrouted"`
	Acked           uint64             `json:"acked"`
	AckErrors       uint64             `json:"ack_errors"`
	NotAcked        uint64             `json:"not_acked"`
	StreamMsgs      *uint64            `json:"stream_msgs,omitempty"`
	WindowSent      uint64             `json:"window_sent"`
	WindowDelivered uint64             `json:"window_delivered"`
	WindowAcked     uint64             `json:"window_acked"`
	DeliveredPerS   float64            `json:"delivered_per_s"`
	AckedPerS       float64            `json:"acked_per_s"`
	ServerCPUS      float64            `json:"server_cpu_s"`
	DeliveredPerCPU float64            `json:"delivered_per_server_cpu_s"`
	AckedPerCPU     float64            `json:"acked_per_server_cpu_s"`
	WorkPerCPU      float64            `json:"work_per_server_cpu_s"`
	WorkUnit        string             `json:"work_unit"`
	DriverCPUS      float64            `json:"driver_cpu_s"`
	OtherCPUS       float64            `json:"other_cpu_s"`
	LatencyUs       map[string]summary `json:"latency_us"`
	LatencyFrom     string             `json:"latency_from"`
	Errors          []string           `json:"errors,omitempty"`
	OK              bool               `json:"ok"`
}

func main() {
	url := flag.String("url", "nats://127.0.0.1:4222", "server URL")
	mode := flag.String("mode", "core", "core | jetstream")
	users := flag.Int("users", 200, "users (even; pairs = users/2)")
	rate := flag.Float64("rate", 4500, "messages per second, total")
	payload := flag.Int("payload", 200, "message bytes")
	duration := flag.Duration("duration", 10*time.Second, "measured window")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up before the window")
	grace := flag.Duration("grace", 10*time.Second, "how long to wait for outstanding deliveries and acks")
	serverPid := flag.String("server-pid", "", "server process id (for CPU time)")
	jsonOut := flag.String("json", "", "also write the JSON report here")
	note := flag.String("server-note", "", "free text recorded in the report (which server, which settings)")
	flag.Parse()
	if *users < 2 || *users%2 != 0 || *payload < 16 || *rate <= 0 {
		fmt.Fprintln(os.Stderr, "natsbench: need an even -users >= 2, -payload >= 16, -rate > 0")
		os.Exit(1)
	}
	if *mode != "core" && *mode != "jetstream" {
		fmt.Fprintln(os.Stderr, "natsbench: -mode core|jetstream")
		os.Exit(1)
	}
	js := *mode == "jetstream"
	die := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "natsbench: "+format+"\n", a...)
		os.Exit(1)
	}

	var errMu sync.Mutex
	var errs []string
	addErr := func(e string) {
		errMu.Lock()
		if len(errs) < 20 {
			errs = append(errs, e)
		}
		errMu.Unlock()
	}

	total := int(math.Ceil(*rate * (warmup.Seconds() + duration.Seconds())))
	recv := make([]int32, total)   // receptions of message k
	acked := make([]int32, total)  // PubAcks of message k
	sentAt := make([]int64, total) // ns since start of the publish of message k (0: not yet)
	var misrouted, ackErrors, winDelivered, winAcked atomic.Uint64
	var deliverLat, ackLat recorder
	winFrom, winTo := int64(*warmup), int64(*warmup+*duration)
	start := time.Now().Add(time.Hour) // reset just before the first publish

	conns := make([]*nats.Conn, *users)
	for u := range conns {
		nc, err := nats.Connect(*url, nats.Name(fmt.Sprintf("natsbench-%d", u)), nats.MaxReconnects(0),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { addErr("async: " + err.Error()) }))
		if err != nil {
			die("connect %s: %v", *url, err)
		}
		conns[u] = nc
	}
	version := conns[0].ConnectedServerVersion()
	var startNs atomic.Int64 // start as UnixNano, for the handlers
	since := func() int64 { return time.Now().UnixNano() - startNs.Load() }

	onMessage := func(u int, data []byte) {
		now := since()
		if len(data) < 16 {
			addErr("short message")
			return
		}
		k := int(binary.BigEndian.Uint64(data[0:8]))
		at := int64(binary.BigEndian.Uint64(data[8:16]))
		if k < 0 || k >= total || (k%*users)^1 != u {
			misrouted.Add(1)
			return
		}
		if atomic.AddInt32(&recv[k], 1) == 1 && now >= winFrom && now < winTo {
			winDelivered.Add(1)
		}
		if at >= winFrom && at < winTo {
			deliverLat.add(float64(now-at) / 1e3)
		}
	}

	if js {
		jsc, err := conns[0].JetStream()
		if err != nil {
			die("jetstream: %v", err)
		}
		_ = jsc.DeleteStream("CHAT")
		if _, err := jsc.AddStream(&nats.StreamConfig{Name: "CHAT", Subjects: []string{"chat.>"},
			Storage: nats.FileStorage, Replicas: 1, Retention: nats.LimitsPolicy}); err != nil {
			die("add stream: %v", err)
		}
	}
	for u, nc := range conns {
		subj := "chat." + strconv.Itoa(u)
		handler := func(m *nats.Msg) { onMessage(u, m.Data) }
		var sub *nats.Subscription
		var err error
		if js {
			jsc, e := nc.JetStream()
			if e != nil {
				die("jetstream: %v", e)
			}
			sub, err = jsc.Subscribe(subj, handler, nats.OrderedConsumer(), nats.DeliverNew())
			if err != nil {
				die("ordered consumer for %s: %v", subj, err)
			}
			prefix := "acks." + strconv.Itoa(u) + "."
			var ackSub *nats.Subscription
			ackSub, err = nc.Subscribe(prefix+"*", func(m *nats.Msg) {
				now := since()
				k, e := strconv.Atoi(strings.TrimPrefix(m.Subject, prefix))
				if e != nil || k < 0 || k >= total {
					ackErrors.Add(1)
					return
				}
				if m.Header.Get("Status") != "" || len(m.Data) == 0 || strings.Contains(string(m.Data), "\"error\"") {
					ackErrors.Add(1)
					addErr(fmt.Sprintf("pub ack %d: status %q: %s", k, m.Header.Get("Status"), m.Data))
					return
				}
				if atomic.AddInt32(&acked[k], 1) == 1 && now >= winFrom && now < winTo {
					winAcked.Add(1)
				}
				if at := atomic.LoadInt64(&sentAt[k]); at >= winFrom && at < winTo {
					ackLat.add(float64(now-at) / 1e3)
				}
			})
			if err != nil {
				die("ack subscription: %v", err)
			}
			_ = ackSub.SetPendingLimits(-1, -1)
		} else {
			sub, err = nc.Subscribe(subj, handler)
			if err != nil {
				die("subscribe: %v", err)
			}
		}
		_ = sub.SetPendingLimits(-1, -1)
		if err := nc.Flush(); err != nil {
			die("flush: %v", err)
		}
	}
	fmt.Fprintf(os.Stderr, "natsbench: %s, %d users (%d pairs) on %s (nats-server %s): %d messages at %.0f/s, %v warm-up + %v measured\n",
		*mode, *users, *users/2, *url, version, total, *rate, *warmup, *duration)
	if js {
		time.Sleep(500 * time.Millisecond) // let the ordered consumers settle
	}

	// CPU time of the server, this driver and the machine at the window's edges.
	type cpu struct{ server, self, machine float64 }
	readCPU := func() cpu {
		var c cpu
		if *serverPid != "" {
			s, err := procCPU(*serverPid)
			if err != nil {
				addErr("server cpu: " + err.Error())
			}
			c.server = s
		}
		c.self, _ = procCPU("self")
		c.machine = machineBusy()
		return c
	}
	var cpuFrom, cpuTo cpu
	var cpuDone sync.WaitGroup
	cpuDone.Add(1)

	buf := make([]byte, *payload)
	for i := 16; i < len(buf); i++ {
		buf[i] = 'x'
	}
	var lag []float64
	t0 := time.Now()
	startNs.Store(t0.UnixNano())
	start = t0
	go func() {
		defer cpuDone.Done()
		time.Sleep(time.Until(start.Add(*warmup)))
		cpuFrom = readCPU()
		time.Sleep(time.Until(start.Add(*warmup + *duration)))
		cpuTo = readCPU()
	}()
	var sent, winSent uint64
	for k := 0; k < total; k++ {
		due := time.Duration(float64(k) * 1e9 / *rate)
		if d := time.Until(start.Add(due)); d > 0 {
			time.Sleep(d)
		}
		sender := k % *users
		partner := sender ^ 1
		now := since()
		binary.BigEndian.PutUint64(buf[0:8], uint64(k))
		binary.BigEndian.PutUint64(buf[8:16], uint64(now))
		atomic.StoreInt64(&sentAt[k], now)
		subj := "chat." + strconv.Itoa(partner)
		var err error
		if js {
			err = conns[sender].PublishRequest(subj, "acks."+strconv.Itoa(sender)+"."+strconv.Itoa(k), buf)
		} else {
			err = conns[sender].Publish(subj, buf)
		}
		if err != nil {
			addErr("publish: " + err.Error())
			continue
		}
		sent++
		if now >= winFrom && now < winTo {
			winSent++
			lag = append(lag, float64(now-int64(due))/1e3)
		}
	}
	for _, nc := range conns {
		_ = nc.Flush()
	}
	cpuDone.Wait()

	// Grace: wait until everything sent arrived (and was acked), or the grace period ends.
	complete := func() bool {
		for k := 0; k < total; k++ {
			if atomic.LoadInt64(&sentAt[k]) == 0 {
				continue
			}
			if atomic.LoadInt32(&recv[k]) == 0 || (js && atomic.LoadInt32(&acked[k]) == 0) {
				return false
			}
		}
		return true
	}
	graceEnd := time.Now().Add(*grace)
	for !complete() && time.Now().Before(graceEnd) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // late duplicates, if any
	var streamMsgs *uint64
	if js {
		// How many messages the stream holds: tells "stored but not yet delivered or acked"
		// from "never stored".
		if jsc, err := conns[0].JetStream(nats.MaxWait(5 * time.Second)); err == nil {
			if info, err := jsc.StreamInfo("CHAT"); err == nil {
				n := info.State.Msgs
				streamMsgs = &n
			} else {
				addErr("stream info: " + err.Error())
			}
		}
	}
	for _, nc := range conns {
		nc.Close()
	}

	var delivered, dups, lost, nAcked, notAcked uint64
	for k := 0; k < total; k++ {
		r := atomic.LoadInt32(&recv[k])
		if r > 0 {
			delivered++
			dups += uint64(r - 1)
		} else if atomic.LoadInt64(&sentAt[k]) != 0 {
			lost++
		}
		if js {
			if atomic.LoadInt32(&acked[k]) > 0 {
				nAcked++
			} else if atomic.LoadInt64(&sentAt[k]) != 0 {
				notAcked++
			}
		}
	}
	rep := report{
		Peer: "nats-" + *mode, Mode: *mode, URL: *url, ServerVersion: version, ServerNote: *note,
		Users: *users, Pairs: *users / 2, RateTarget: *rate, PayloadBytes: *payload,
		WarmupS: warmup.Seconds(), DurationS: duration.Seconds(),
		Sent: sent, Delivered: delivered, Duplicates: dups, Lost: lost, Misrouted: misrouted.Load(),
		Acked: nAcked, AckErrors: ackErrors.Load(), NotAcked: notAcked,
		StreamMsgs: streamMsgs, WindowSent: winSent, WindowDelivered: winDelivered.Load(), WindowAcked: winAcked.Load(),
		LatencyUs:   map[string]summary{"deliver": summarize(deliverLat.vals), "dispatch_lag": summarize(lag)},
		LatencyFrom: "actual publish (stamped in the message); dispatch_lag = publish - due time",
	}
	if js {
		rep.LatencyUs["ack"] = summarize(ackLat.vals)
	}
	rep.DeliveredPerS = float64(rep.WindowDelivered) / duration.Seconds()
	rep.AckedPerS = float64(rep.WindowAcked) / duration.Seconds()
	rep.ServerCPUS = cpuTo.server - cpuFrom.server
	rep.DriverCPUS = cpuTo.self - cpuFrom.self
	rep.OtherCPUS = math.Max(0, (cpuTo.machine-cpuFrom.machine)-rep.ServerCPUS-rep.DriverCPUS)
	if rep.ServerCPUS > 0 {
		rep.DeliveredPerCPU = float64(rep.WindowDelivered) / rep.ServerCPUS
		rep.AckedPerCPU = float64(rep.WindowAcked) / rep.ServerCPUS
	}
	if js {
		rep.WorkPerCPU = math.Min(rep.DeliveredPerCPU, rep.AckedPerCPU)
		rep.WorkUnit = "messages stored (PubAck) and delivered per server CPU-second: min(acked, delivered) in the window"
	} else {
		rep.WorkPerCPU = rep.DeliveredPerCPU
		rep.WorkUnit = "messages delivered per server CPU-second"
	}
	errMu.Lock()
	rep.Errors = errs
	errMu.Unlock()
	rep.OK = rep.Lost == 0 && rep.Duplicates == 0 && rep.Misrouted == 0 && rep.AckErrors == 0 && rep.NotAcked == 0
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	if *jsonOut != "" {
		if err := os.WriteFile(*jsonOut, append(out, '\n'), 0o644); err != nil {
			die("writing %s: %v", *jsonOut, err)
		}
	}
	fmt.Fprintf(os.Stderr, "natsbench: sent %d, delivered %d, lost %d, duplicates %d, acked %d (errors %d); %.0f delivered per server CPU-s\n",
		sent, delivered, lost, dups, nAcked, ackErrors.Load(), rep.DeliveredPerCPU)
	if !rep.OK {
		os.Exit(2)
	}
}
