//! `--history FILE`: a JSON-lines history of every operation, Jepsen-style, and the offline
//! checker (`tern-loadgen check-history FILE`) that reads it.
//!
//! One line per event: `{"t_us", "process", "type", "f", "chat", "seq", "client_msg_id",
//! "device", "from", "error"}` (absent fields omitted). `type` is `invoke` when a send is issued,
//! `ok` with the assigned seq when acknowledged, `fail` with the error when definitely refused,
//! `info` when the outcome is unknown (timeout, disconnect); a send still unresolved at the end
//! of the file is indeterminate too. `f` is `send`, `receive` (an `ok` per message a device
//! receives, `from` naming the sender's process) or `join` (an `ok` per member of a chat, written
//! before the first send, so a recipient that receives nothing is still checked).
//!
//! The writer streams through a [`BufWriter`]: memory stays bounded whatever the run's length.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tern_sdk::protocol::{ChatId, ClientMsgId, Seq};

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// Issued.
    Invoke,
    /// Completed.
    Ok,
    /// Definitely did not happen.
    Fail,
    /// May or may not have happened.
    Info,
}

/// The operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A message sent.
    Send,
    /// A message received.
    Receive,
    /// A process is a member of a chat.
    Join,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Microseconds since the history started.
    pub t_us: u64,
    /// Who: `u<index>` (each loadgen user has one device).
    pub process: String,
    /// invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: Type,
    /// send / receive / join.
    pub f: Op,
    /// The chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<u64>,
    /// The seq the server assigned (acknowledged sends, receptions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<Seq>,
    /// The sender's id for the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<ClientMsgId>,
    /// The process's device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<u64>,
    /// Receptions: the sending process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// fail / info: the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    fn new(process: String, kind: Type, f: Op, chat: ChatId) -> Event {
        Event {
            t_us: 0,
            process,
            kind,
            f,
            chat: Some(chat.0),
            seq: None,
            client_msg_id: None,
            device: None,
            from: None,
            error: None,
        }
    }
}

/// The process name of loadgen user `index`.
pub fn process(index: usize) -> String {
    format!("u{index}")
}

/// The history writer: one buffered file, shared by every task.
#[derive(Debug)]
pub struct History {
    start: Instant,
    out: Mutex<BufWriter<File>>,
    write_errors: AtomicU64,
}

impl History {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> anyhow::Result<History> {
        let file = File::create(path)
            .map_err(|e| anyhow::anyhow!("creating the history {}: {e}", path.display()))?;
        Ok(History {
            start: Instant::now(),
            out: Mutex::new(BufWriter::with_capacity(1 << 16, file)),
            write_errors: AtomicU64::new(0),
        })
    }

    fn write(&self, mut ev: Event) {
        ev.t_us = crate::openloop::micros(self.start.elapsed());
        let ok = match (serde_json::to_string(&ev), self.out.lock()) {
            (Ok(line), Ok(mut out)) => writeln!(out, "{line}").is_ok(),
            _ => false,
        };
        if !ok {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `process` (device `device`) is a member of `chat`.
    pub fn join(&self, process: String, device: u64, chat: ChatId) {
        let mut ev = Event::new(process, Type::Ok, Op::Join, chat);
        ev.device = Some(device);
        self.write(ev);
    }

    /// A send is issued.
    pub fn invoke(&self, process: String, device: u64, chat: ChatId, cmid: ClientMsgId) {
        let mut ev = Event::new(process, Type::Invoke, Op::Send, chat);
        ev.device = Some(device);
        ev.client_msg_id = Some(cmid);
        self.write(ev);
    }

    /// The send's outcome: acknowledged as `seq`, or an error (definite when the server or
    /// client refused it with a code, indeterminate otherwise).
    pub fn outcome(
        &self,
        process: String,
        device: u64,
        chat: ChatId,
        cmid: ClientMsgId,
        result: Result<Seq, &tern_sdk::Error>,
    ) {
        let kind = match result {
            Ok(_) => Type::Ok,
            Err(e) if e.code().is_some() => Type::Fail,
            Err(_) => Type::Info,
        };
        let mut ev = Event::new(process, kind, Op::Send, chat);
        ev.device = Some(device);
        ev.client_msg_id = Some(cmid);
        match result {
            Ok(seq) => ev.seq = Some(seq),
            Err(e) => {
                ev.error = Some(match e.code() {
                    Some(code) => format!("{code:?}"),
                    None => crate::run::sdk_error_kind("send", e),
                })
            }
        }
        self.write(ev);
    }

    /// `process` received `seq` (carrying `cmid`) from `from` in `chat`.
    pub fn received(
        &self,
        process: String,
        device: u64,
        chat: ChatId,
        seq: Seq,
        cmid: ClientMsgId,
        from: String,
    ) {
        let mut ev = Event::new(process, Type::Ok, Op::Receive, chat);
        ev.device = Some(device);
        ev.seq = Some(seq);
        ev.client_msg_id = Some(cmid);
        ev.from = Some(from);
        self.write(ev);
    }

    /// Flushes the file; an error if any event could not be written.
    pub fn finish(&self) -> anyhow::Result<()> {
        let flushed = self.out.lock().map(|mut o| o.flush());
        if !matches!(flushed, Ok(Ok(()))) {
            anyhow::bail!("flushing the history failed");
        }
        let n = self.write_errors.load(Ordering::Relaxed);
        if n > 0 {
            anyhow::bail!("{n} history events could not be written");
        }
        Ok(())
    }
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Sends issued.
    pub invoked: u64,
    /// Sends acknowledged.
    pub ok: u64,
    /// Sends definitely refused.
    pub failed: u64,
    /// Sends whose outcome is unknown (`info`, or no outcome in the file).
    pub indeterminate: u64,
    /// Receptions.
    pub received: u64,
    /// Deliveries expected: each acknowledged send times its chat's other members.
    pub expected: u64,
    /// Acknowledged sends a recipient never received.
    pub lost: u64,
    /// Receptions beyond the first of a message by one recipient.
    pub duplicates: u64,
    /// Receptions with a seq not above the recipient's previous one in that chat.
    pub out_of_order: u64,
    /// Receptions of a message never invoked.
    pub phantom: u64,
    /// Receptions of a message whose send definitely failed.
    pub failed_received: u64,
    /// Receptions whose chat or seq differ from the acknowledgement's.
    pub mismatched: u64,
    /// Acknowledged sends that share a (chat, seq) with another.
    pub seq_clashes: u64,
    /// Lines that are not events, or events lacking a field their kind needs.
    pub malformed: u64,
}

impl Summary {
    /// Violations in total.
    pub fn violations(&self) -> u64 {
        self.lost
            + self.duplicates
            + self.out_of_order
            + self.phantom
            + self.failed_received
            + self.mismatched
            + self.seq_clashes
            + self.malformed
    }

    /// A readable summary.
    pub fn human(&self) -> String {
        format!(
            "history: {} lines; sends invoked {} ok {} failed {} indeterminate {}; received {} of {} expected\n\
             violations {}: lost {} duplicates {} out_of_order {} phantom {} failed_received {} mismatched {} seq_clashes {} malformed {}\n",
            self.lines,
            self.invoked,
            self.ok,
            self.failed,
            self.indeterminate,
            self.received,
            self.expected,
            self.violations(),
            self.lost,
            self.duplicates,
            self.out_of_order,
            self.phantom,
            self.failed_received,
            self.mismatched,
            self.seq_clashes,
            self.malformed,
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Ok(Seq),
    Fail,
    Info,
}

#[derive(Debug)]
struct Send {
    chat: u64,
    status: Status,
}

/// Reads a history and checks it.
#[derive(Debug, Default)]
pub struct Checker {
    s: Summary,
    members: HashMap<u64, BTreeSet<String>>,
    /// (process, client_msg_id) -> the send.
    sends: HashMap<(String, ClientMsgId), Send>,
    /// (chat, seq) -> the acknowledged send.
    by_seq: HashMap<(u64, Seq), (String, ClientMsgId)>,
    /// (receiver, sender, client_msg_id) -> (times, chat, seq of the first).
    got: HashMap<(String, String, ClientMsgId), (u64, u64, Seq)>,
    /// (receiver, chat) -> highest seq received.
    highest: HashMap<(String, u64), Seq>,
}

impl Checker {
    /// One line of the file.
    pub fn line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.s.lines += 1;
        match serde_json::from_str::<Event>(line) {
            Ok(ev) => self.event(ev),
            Err(_) => self.s.malformed += 1,
        }
    }

    /// One event, in file order.
    pub fn event(&mut self, ev: Event) {
        let Some(chat) = ev.chat else {
            self.s.malformed += 1;
            return;
        };
        match (ev.f, ev.kind) {
            (Op::Join, _) => {
                self.members.entry(chat).or_default().insert(ev.process);
            }
            (Op::Send, kind) => self.send(ev.process, chat, kind, ev.client_msg_id, ev.seq),
            (Op::Receive, Type::Ok) => {
                let (Some(seq), Some(cmid), Some(from)) = (ev.seq, ev.client_msg_id, ev.from)
                else {
                    self.s.malformed += 1;
                    return;
                };
                self.s.received += 1;
                self.members
                    .entry(chat)
                    .or_default()
                    .insert(ev.process.clone());
                let e = self
                    .got
                    .entry((ev.process.clone(), from, cmid))
                    .or_insert((0, chat, seq));
                e.0 += 1;
                if e.0 > 1 {
                    self.s.duplicates += 1;
                    return;
                }
                let h = self.highest.entry((ev.process, chat)).or_insert(0);
                if seq <= *h {
                    self.s.out_of_order += 1;
                }
                *h = (*h).max(seq);
            }
            (Op::Receive, _) => {}
        }
    }

    fn send(
        &mut self,
        process: String,
        chat: u64,
        kind: Type,
        cmid: Option<ClientMsgId>,
        seq: Option<Seq>,
    ) {
        let Some(cmid) = cmid else {
            self.s.malformed += 1;
            return;
        };
        self.members
            .entry(chat)
            .or_default()
            .insert(process.clone());
        let key = (process, cmid);
        if kind == Type::Invoke {
            if self.sends.contains_key(&key) {
                // The same message invoked twice: its receptions cannot be told apart.
                self.s.malformed += 1;
                return;
            }
            self.s.invoked += 1;
            self.sends.insert(
                key,
                Send {
                    chat,
                    status: Status::Pending,
                },
            );
            return;
        }
        let Some(send) = self.sends.get_mut(&key) else {
            // An outcome without an invoke.
            self.s.malformed += 1;
            return;
        };
        if send.status != Status::Pending || send.chat != chat {
            self.s.malformed += 1;
            return;
        }
        send.status = match (kind, seq) {
            (Type::Ok, Some(seq)) => {
                if self.by_seq.insert((chat, seq), key).is_some() {
                    self.s.seq_clashes += 1;
                }
                Status::Ok(seq)
            }
            (Type::Ok, None) => {
                self.s.malformed += 1;
                return;
            }
            (Type::Fail, _) => Status::Fail,
            _ => Status::Info,
        };
    }

    /// Checks what needs the whole file: losses, phantoms, mismatches.
    pub fn finish(mut self) -> Summary {
        for ((_, from, cmid), &(_, chat, seq)) in &self.got {
            match self.sends.get(&(from.clone(), *cmid)) {
                None => self.s.phantom += 1,
                Some(send) => match send.status {
                    Status::Fail => self.s.failed_received += 1,
                    Status::Ok(acked) if acked != seq || send.chat != chat => {
                        self.s.mismatched += 1
                    }
                    _ if send.chat != chat => self.s.mismatched += 1,
                    _ => {}
                },
            }
        }
        let empty = BTreeSet::new();
        for ((process, cmid), send) in &self.sends {
            match send.status {
                Status::Ok(seq) => {
                    self.s.ok += 1;
                    for member in self.members.get(&send.chat).unwrap_or(&empty) {
                        if member == process {
                            continue;
                        }
                        self.s.expected += 1;
                        match self.got.get(&(member.clone(), process.clone(), *cmid)) {
                            Some(&(_, chat, got)) if chat == send.chat && got == seq => {}
                            // Mismatches are counted above; the acknowledged message is lost.
                            _ => self.s.lost += 1,
                        }
                    }
                }
                Status::Fail => self.s.failed += 1,
                Status::Info | Status::Pending => self.s.indeterminate += 1,
            }
        }
        self.s
    }
}

/// Checks the history at `path`.
pub fn check_file(path: &Path) -> anyhow::Result<Summary> {
    let file = File::open(path)
        .map_err(|e| anyhow::anyhow!("opening the history {}: {e}", path.display()))?;
    let mut checker = Checker::default();
    for line in BufReader::new(file).lines() {
        let line =
            line.map_err(|e| anyhow::anyhow!("reading the history {}: {e}", path.display()))?;
        checker.line(&line);
    }
    Ok(checker.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean two-member chat (7): u0 sends seq 1 and 3, u1 sends seq 2; each receives the
    /// other's. As JSON lines, the way the writer writes them.
    fn clean() -> Vec<String> {
        let mut lines = vec![
            r#"{"t_us":0,"process":"u0","type":"ok","f":"join","chat":7,"device":10}"#.to_string(),
            r#"{"t_us":0,"process":"u1","type":"ok","f":"join","chat":7,"device":11}"#.to_string(),
        ];
        for (p, cmid, seq) in [("u0", 1, 1), ("u1", 2, 2), ("u0", 3, 3)] {
            lines.push(format!(
                r#"{{"t_us":1,"process":"{p}","type":"invoke","f":"send","chat":7,"client_msg_id":{cmid}}}"#
            ));
            lines.push(format!(
                r#"{{"t_us":2,"process":"{p}","type":"ok","f":"send","chat":7,"seq":{seq},"client_msg_id":{cmid}}}"#
            ));
        }
        lines.extend(receptions(&[
            ("u1", "u0", 1, 1),
            ("u0", "u1", 2, 2),
            ("u1", "u0", 3, 3),
        ]));
        lines
    }

    fn receptions(r: &[(&str, &str, u64, u64)]) -> Vec<String> {
        r.iter()
            .map(|(to, from, cmid, seq)| {
                format!(
                    r#"{{"t_us":3,"process":"{to}","type":"ok","f":"receive","chat":7,"seq":{seq},"client_msg_id":{cmid},"from":"{from}"}}"#
                )
            })
            .collect()
    }

    fn check(lines: &[String]) -> Summary {
        let mut c = Checker::default();
        for l in lines {
            c.line(l);
        }
        c.finish()
    }

    fn without_receptions(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .filter(|l| !l.contains("receive"))
            .cloned()
            .collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let s = check(&clean());
        assert_eq!(s.violations(), 0, "{s:?}");
        assert_eq!((s.invoked, s.ok, s.received, s.expected), (3, 3, 3, 3));
    }

    #[test]
    fn the_writer_writes_what_the_checker_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let h = History::create(&path).unwrap();
        let chat = ChatId(7);
        h.join(process(0), 10, chat);
        h.join(process(1), 11, chat);
        h.invoke(process(0), 10, chat, 1);
        h.received(process(1), 11, chat, 1, 1, process(0));
        h.outcome(process(0), 10, chat, 1, Ok(1));
        h.invoke(process(1), 11, chat, 2);
        h.outcome(process(1), 11, chat, 2, Err(&tern_sdk::Error::Timeout));
        h.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""type":"info""#), "{text}");
        let s = check_file(&path).unwrap();
        assert_eq!(s.violations(), 0, "{s:?}");
        assert_eq!((s.ok, s.indeterminate, s.received), (1, 1, 1));
    }

    #[test]
    fn a_lost_message_is_reported() {
        let mut lines = without_receptions(&clean());
        lines.extend(receptions(&[("u1", "u0", 1, 1), ("u0", "u1", 2, 2)]));
        let s = check(&lines);
        assert_eq!(s.lost, 1, "{s:?}");
        assert_eq!(s.violations(), 1);
    }

    #[test]
    fn a_member_that_received_nothing_loses_everything_sent_to_it() {
        let mut lines = without_receptions(&clean());
        lines.extend(receptions(&[("u0", "u1", 2, 2)]));
        assert_eq!(check(&lines).lost, 2);
    }

    #[test]
    fn a_duplicate_is_reported() {
        let mut lines = clean();
        lines.extend(receptions(&[("u1", "u0", 3, 3)]));
        let s = check(&lines);
        assert_eq!(s.duplicates, 1, "{s:?}");
        assert_eq!(s.violations(), 1);
    }

    #[test]
    fn a_reordering_is_reported() {
        let mut lines = without_receptions(&clean());
        lines.extend(receptions(&[
            ("u1", "u0", 3, 3),
            ("u1", "u0", 1, 1),
            ("u0", "u1", 2, 2),
        ]));
        let s = check(&lines);
        assert_eq!(s.out_of_order, 1, "{s:?}");
        assert_eq!(s.violations(), 1);
    }

    #[test]
    fn a_phantom_is_reported() {
        let mut lines = clean();
        lines.extend(receptions(&[("u1", "u0", 99, 4)]));
        let s = check(&lines);
        assert_eq!(s.phantom, 1, "{s:?}");
        assert_eq!(s.violations(), 1);
    }

    #[test]
    fn two_acks_with_one_seq_are_reported() {
        let mut lines = clean();
        lines.push(
            r#"{"t_us":1,"process":"u1","type":"invoke","f":"send","chat":7,"client_msg_id":5}"#
                .into(),
        );
        lines.push(r#"{"t_us":2,"process":"u1","type":"ok","f":"send","chat":7,"seq":3,"client_msg_id":5}"#.into());
        let s = check(&lines);
        assert_eq!(s.seq_clashes, 1, "{s:?}");
        // u0 never received it, either.
        assert_eq!(s.lost, 1, "{s:?}");
    }

    #[test]
    fn indeterminate_sends_may_arrive_once_but_not_twice_and_failed_ones_never() {
        let mut lines = clean();
        for (cmid, outcome) in [
            (5, r#""type":"info","error":"send: timeout""#),
            (6, r#""type":"fail","error":"RateLimited""#),
        ] {
            lines.push(format!(
                r#"{{"t_us":1,"process":"u0","type":"invoke","f":"send","chat":7,"client_msg_id":{cmid}}}"#
            ));
            lines.push(format!(
                r#"{{"t_us":2,"process":"u0",{outcome},"f":"send","chat":7,"client_msg_id":{cmid}}}"#
            ));
        }
        // Invoked, never resolved: indeterminate as well.
        lines.push(
            r#"{"t_us":1,"process":"u0","type":"invoke","f":"send","chat":7,"client_msg_id":8}"#
                .into(),
        );
        let mut once = lines.clone();
        once.extend(receptions(&[("u1", "u0", 5, 4), ("u1", "u0", 8, 5)]));
        let s = check(&once);
        assert_eq!(s.violations(), 0, "{s:?}");
        assert_eq!((s.indeterminate, s.failed), (2, 1));

        let mut twice = once.clone();
        twice.extend(receptions(&[("u1", "u0", 5, 4)]));
        assert_eq!(check(&twice).duplicates, 1);

        let mut failed = lines;
        failed.extend(receptions(&[("u1", "u0", 6, 4)]));
        assert_eq!(check(&failed).failed_received, 1);
    }

    #[test]
    fn garbage_and_a_wrong_seq_are_reported() {
        let mut lines = without_receptions(&clean());
        lines.push("not json".into());
        lines.extend(receptions(&[
            ("u1", "u0", 1, 1),
            ("u0", "u1", 2, 2),
            ("u1", "u0", 3, 9),
        ]));
        let s = check(&lines);
        assert_eq!((s.malformed, s.mismatched, s.lost), (1, 1, 1), "{s:?}");
    }
}
