//! The `tern` CLI, driven as a subprocess against a real server (in-process, file OTP sender):
//! logins through the OTP file and a pseudo-terminal, a chat between two profiles, `tail`
//! printing each message exactly once across runs, the documented JSON fields, exit codes and
//! messages, and the profile file's mode and lock.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tern_tests::TestServer;
use tern_tests::child::free_udp_port;
use tern_tests::cli::{Run, Tern, cli_binary, finish};

/// Alice and Bob logged in on profiles `alice` and `bob`, with a direct chat opened by Alice.
struct Pair {
    tern: Tern,
    alice: u64,
    chat: u64,
}

async fn pair(server: &TestServer) -> Pair {
    let tern = Tern::new(server);
    let alice = tern.login("alice", "alice@example.org").await["user_id"]
        .as_u64()
        .unwrap();
    let bob = tern.login("bob", "bob@example.org").await["user_id"]
        .as_u64()
        .unwrap();
    let open = tern
        .run("alice", &["--json", "open", &bob.to_string()])
        .await
        .ok();
    let chat = open.records("chat")[0]["chat_id"].as_u64().unwrap();
    Pair { tern, alice, chat }
}

impl Pair {
    /// Alice sends `text` (as an argument) and gets its seq back.
    async fn send(&self, text: &str) -> u64 {
        let run = self
            .tern
            .run("alice", &["--json", "send", &self.chat.to_string(), text])
            .await
            .ok();
        run.records("sent")[0]["seq"].as_u64().unwrap()
    }
}

/// `tail` printing `count` messages (and nothing else), bounded at a minute.
fn tail_messages(count: &str) -> [&str; 8] {
    [
        "--json",
        "tail",
        "--only",
        "message",
        "--count",
        count,
        "--timeout",
        "60s",
    ]
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// Asserts that `v` has exactly the documented `fields` (docs/cli.md), no more, no fewer.
fn assert_fields(v: &Value, fields: &[&str]) {
    let got: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(got, want, "fields of {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_by_one_user_is_tailed_by_the_other_exactly_once() {
    let server = TestServer::start().await;
    let p = pair(&server).await;
    let chat = p.chat.to_string();
    // Bob's tail may connect before or after the sends: either way it prints each one once.
    let tail = p.tern.spawn("bob", &tail_messages("3"));
    let mut sent = vec![p.send("one").await];
    let piped = p
        .tern
        .run_with_stdin("alice", &["--json", "send", &chat], "two from stdin\n")
        .await
        .ok();
    sent.push(piped.records("sent")[0]["seq"].as_u64().unwrap());
    sent.push(p.send("three").await);
    let got = finish(tail).await.ok().records("message");
    assert_eq!(texts(&got), ["one", "two from stdin", "three"]);
    assert_eq!(seqs(&got), sent);
    assert!(
        got.iter()
            .all(|m| m["sender"] == p.alice && m["own"] == false)
    );

    // After a pause, a second tail prints what was missed, and only that.
    let later = vec![p.send("four").await, p.send("five").await];
    let run = p.tern.run("bob", &tail_messages("2")).await.ok();
    let got = run.records("message");
    assert_eq!(texts(&got), ["four", "five"]);
    assert_eq!(seqs(&got), later);
    // And a third has nothing left to print.
    let run = p
        .tern
        .run(
            "bob",
            &["--json", "tail", "--only", "message", "--timeout", "1s"],
        )
        .await
        .ok();
    assert_eq!(run.records("message"), Vec::<Value>::new());

    // Bob's history holds the same five messages, in order.
    let run = p.tern.run("bob", &["--json", "history", &chat]).await.ok();
    let all = run.records("message");
    assert_eq!(
        texts(&all),
        ["one", "two from stdin", "three", "four", "five"]
    );
    assert!(
        all.iter().all(|m| m["own"] == false),
        "bob sent none of them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_has_the_documented_fields() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let login = tern.login("alice", "alice@example.org").await;
    assert_fields(
        &login,
        &[
            "type",
            "profile",
            "identifier",
            "user_id",
            "device_id",
            "server",
        ],
    );
    assert_eq!(login["server"], tern.server.as_str());
    let bob = tern.login("bob", "bob@example.org").await["user_id"]
        .as_u64()
        .unwrap();

    let who = tern.run("alice", &["--json", "whoami"]).await.ok();
    let who = &who.json_lines()[0];
    assert_fields(
        who,
        &[
            "type",
            "profile",
            "logged_in",
            "identifier",
            "user_id",
            "device_id",
            "server",
            "cursor",
        ],
    );
    assert_eq!(who["user_id"], login["user_id"]);

    let open = tern
        .run("alice", &["--json", "open", &bob.to_string()])
        .await
        .ok();
    let chat = &open.records("chat")[0];
    assert_fields(chat, &["type", "chat_id", "kind", "members", "last_seq"]);
    assert_eq!(chat["kind"], "direct");
    let chat_id = chat["chat_id"].as_u64().unwrap().to_string();

    let sent = tern
        .run("alice", &["--json", "send", &chat_id, "hello"])
        .await
        .ok();
    let sent = &sent.json_lines()[0];
    assert_fields(sent, &["type", "chat_id", "seq", "msg_id", "ts_ms"]);
    assert_eq!(sent["type"], "sent");

    let history = tern.run("bob", &["--json", "history", &chat_id]).await.ok();
    let message_fields = [
        "type",
        "chat_id",
        "seq",
        "msg_id",
        "sender",
        "sender_device",
        "own",
        "text",
        "ts_ms",
        "kind",
    ];
    assert_fields(&history.json_lines()[0], &message_fields);

    let tail = tern
        .run(
            "bob",
            &["--json", "tail", "--count", "2", "--timeout", "60s"],
        )
        .await
        .ok();
    let events = tail.json_lines();
    assert_fields(&events[0], &["type", "chat_id", "kind", "members", "pts"]);
    assert_eq!(events[0]["type"], "chat_joined");
    let mut with_pts = message_fields.to_vec();
    with_pts.push("pts");
    assert_fields(&events[1], &with_pts);
    assert_eq!(events[1]["text"], "hello");
    assert_eq!(events[1]["seq"], sent["seq"]);

    let read = tern
        .run("bob", &["--json", "read", &chat_id, "1"])
        .await
        .ok();
    assert_fields(&read.json_lines()[0], &["type", "chat_id", "seq"]);
    let receipts = tern
        .run("alice", &["--json", "receipts", &chat_id])
        .await
        .ok();
    let receipts = receipts.records("receipt");
    assert_eq!(receipts.len(), 2);
    for r in &receipts {
        assert_fields(
            r,
            &["type", "chat_id", "user_id", "delivered_seq", "read_seq"],
        );
    }
    let bobs = receipts.iter().find(|r| r["user_id"] == bob).unwrap();
    assert_eq!(bobs["read_seq"], 1);

    let devices = tern.run("alice", &["--json", "devices"]).await.ok();
    let devices = devices.records("device");
    assert_eq!(devices.len(), 1);
    assert_fields(
        &devices[0],
        &[
            "type",
            "device_id",
            "name",
            "created_ms",
            "revoked",
            "current",
        ],
    );
    assert_eq!(devices[0]["current"], true);
    assert_eq!(devices[0]["device_id"], login["device_id"]);
}

/// Logs in with a wrong code: returns the run and the code the server really issued.
async fn login_with_wrong_code(tern: &Tern, json: bool) -> Run {
    const WRONG: &str = "000000";
    loop {
        let mut args: Vec<String> = tern.server_flags();
        if json {
            args.push("--json".into());
        }
        args.extend([
            "login".into(),
            "carol@example.org".into(),
            "--code".into(),
            WRONG.into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = tern.run("carol", &args).await;
        let issued = tern_tests::read_code(&tern.otp_file, "carol@example.org", 0)
            .await
            .unwrap();
        // One chance in a million that the wrong code is the right one: then ask again.
        if issued != WRONG {
            return run;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_exits_2_with_the_code_and_what_to_do() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let run = login_with_wrong_code(&tern, false).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("wrong code"), "{}", run.stderr);
    assert!(run.stderr.contains("OtpInvalid(13)"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("run `tern --profile carol login carol@example.org` again"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");

    let run = login_with_wrong_code(&tern, true).await;
    assert_eq!(run.code, 2);
    let err: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_fields(
        &err,
        &[
            "type",
            "error",
            "code",
            "code_number",
            "message",
            "hint",
            "exit_code",
        ],
    );
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"], "refused");
    assert_eq!(err["code"], "OtpInvalid");
    assert_eq!(err["code_number"], 13);
    assert_eq!(err["exit_code"], 2);

    // Nothing was stored: the profile is still logged out.
    let who = tern.run("carol", &["--json", "whoami"]).await.ok();
    assert_eq!(who.json_lines()[0]["logged_in"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_3_naming_the_server() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let nowhere = format!("127.0.0.1:{}", free_udp_port());
    let run = tern
        .run(
            "dave",
            &[
                "--server",
                &nowhere,
                "--cert-fingerprint",
                &tern.fingerprint,
                "--connect-timeout",
                "1s",
                "login",
                "dave@example.org",
                "--code",
                "123456",
            ],
        )
        .await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains(&format!("cannot connect to {nowhere}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("tern-server is running"),
        "{}",
        run.stderr
    );

    // A logged-in profile whose server went away: same code, and the JSON error says so.
    tern.login("erin", "erin@example.org").await;
    let run = tern
        .run(
            "erin",
            &[
                "--json",
                "--server",
                &nowhere,
                "--connect-timeout",
                "1s",
                "chats",
            ],
        )
        .await;
    assert_eq!(run.code, 3);
    let err: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_eq!(err["error"], "unreachable");
    assert_eq!(err["code"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_1() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let run = tern.run("x", &["--no-such-flag", "chats"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let run = tern.run("x", &["tail", "--count", "many"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    // No code source and no terminal to ask on: refused before a code is requested.
    let mut args = tern.server_flags();
    args.extend(["login".into(), "frank@example.org".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = tern.run("frank", &args).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("--code CODE or --otp-file FILE"),
        "{}",
        run.stderr
    );
    assert!(!tern.otp_file.exists(), "no code was requested");
    // Not logged in.
    let run = tern.run("frank", &["send", "1", "hi"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not logged in"), "{}", run.stderr);
    assert!(
        run.stderr.contains("tern --profile frank login"),
        "{}",
        run.stderr
    );
    // A profile name that is not a file name.
    let run = tern.run("../etc", &["whoami"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_profile_is_private_one_process_at_a_time_and_tail_stops_on_sigterm() {
    let server = TestServer::start().await;
    let p = pair(&server).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["alice", "bob"] {
            let mode = std::fs::metadata(p.tern.profile_path(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "profile {name}");
        }
    }
    let seq = p.send("before the tail").await;
    let tail = p
        .tern
        .spawn("bob", &["--json", "tail", "--only", "message"]);
    // Wait until the tail has printed the message and saved its cursor (ChatJoined is pts 1,
    // the message pts 2).
    let pid = tail.id().unwrap();
    let mut saved = false;
    for _ in 0..500 {
        let text = std::fs::read_to_string(p.tern.profile_path("bob")).unwrap_or_default();
        let profile: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if profile["sync"]["cursor"]["pts"].as_u64().unwrap_or(0) >= 2 {
            saved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saved, "tail saved its cursor after printing");
    // While the tail holds bob's profile, another bob command is refused (exit 4).
    let refused = p.tern.run("bob", &["chats"]).await;
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("in use"), "{}", refused.stderr);
    // SIGTERM stops the tail with exit 0.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let run = finish(tail).await.ok();
    let got = run.records("message");
    assert_eq!(seqs(&got), [seq]);
    // The profile is free again.
    p.tern.run("bob", &["chats"]).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_logout_end_sessions_with_the_documented_codes() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let first = tern.login("phone", "gina@example.org").await;
    let second = tern.login("laptop", "gina@example.org").await;
    assert_eq!(first["user_id"], second["user_id"]);
    let devices = tern.run("laptop", &["--json", "devices"]).await.ok();
    assert_eq!(devices.records("device").len(), 2);

    let phone = first["device_id"].as_u64().unwrap().to_string();
    tern.run("laptop", &["revoke", &phone]).await.ok();
    let run = tern.run("phone", &["chats"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("DeviceRevoked"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("`tern --profile phone login gina@example.org`"),
        "{}",
        run.stderr
    );
    let who = tern.run("phone", &["--json", "whoami"]).await.ok();
    assert_eq!(
        who.json_lines()[0]["logged_in"],
        false,
        "the dead tokens are gone"
    );

    let run = tern.run("laptop", &["--json", "logout"]).await.ok();
    assert_eq!(run.records("logged_out").len(), 1);
    let run = tern.run("laptop", &["devices"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prompts_for_the_code_on_a_terminal() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let mut cmd = std::process::Command::new(cli_binary());
    cmd.env("TERN_HOME", tern.home.path())
        .env("TERN_PROFILE", "henry")
        .args(tern.server_flags())
        .args(["login", "henry@example.org"]);
    let otp = tern.otp_file.clone();
    let handle = tokio::runtime::Handle::current();
    let screen = tokio::task::spawn_blocking(move || {
        let mut pty = rexpect::session::spawn_command(cmd, Some(30_000)).unwrap();
        pty.exp_string("Code sent to henry@example.org. Enter code: ")
            .unwrap();
        let code = handle
            .block_on(tern_tests::read_code(&otp, "henry@example.org", 0))
            .unwrap();
        pty.send_line(&code).unwrap();
        pty.exp_eof().unwrap()
    })
    .await
    .unwrap();
    assert!(
        screen.contains("logged in as henry@example.org"),
        "{screen}"
    );
    let who = tern.run("henry", &["--json", "whoami"]).await.ok();
    assert_eq!(who.json_lines()[0]["logged_in"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshed_tokens_are_saved_so_every_run_resumes() {
    // Access tokens this short are refreshed on every connect: each run rotates the refresh
    // token, and a run that failed to save the new one would end the session (RefreshReused).
    let server = TestServer::start_with(|c| c.auth.access_ttl_s = 1).await;
    let tern = Tern::new(&server);
    tern.login("ivy", "ivy@example.org").await;
    let refresh_token = || {
        let text = std::fs::read_to_string(tern.profile_path("ivy")).unwrap();
        let profile: Value = serde_json::from_str(&text).unwrap();
        profile["tokens"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut seen = vec![refresh_token()];
    for _ in 0..3 {
        tern.run("ivy", &["devices"]).await.ok();
        let now = refresh_token();
        assert!(
            !seen.contains(&now),
            "the refresh token was rotated and saved"
        );
        seen.push(now);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_repeated_with_its_client_msg_id_is_stored_once() {
    let server = TestServer::start().await;
    let p = pair(&server).await;
    let chat = p.chat.to_string();
    let send = |text: &'static str| {
        let chat = chat.clone();
        let tern = &p.tern;
        async move {
            let args = ["--json", "send", &chat, text, "--client-msg-id", "42"];
            tern.run("alice", &args).await.ok().records("sent")[0].clone()
        }
    };
    let first = send("once").await;
    let again = send("once").await;
    assert_eq!(first, again, "the retry got the first answer");
    let history = p.tern.run("bob", &["--json", "history", &chat]).await.ok();
    assert_eq!(texts(&history.records("message")), ["once"]);
}

/// Runs `tern --json args` as `profile`, expecting success; its JSON lines.
async fn json_ok(tern: &Tern, profile: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    tern.run(profile, &all).await.ok().json_lines()
}

/// Runs `tern --json args` as `profile`, expecting a refusal (exit 2) with `code`; the error.
async fn json_refused(tern: &Tern, profile: &str, args: &[&str], code: &str) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = tern.run(profile, &all).await;
    assert_eq!(run.code, 2, "{args:?}: {run:?}");
    assert_eq!(run.stdout, "", "nothing on stdout");
    let err: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_eq!(err["error"], "refused", "{err}");
    assert_eq!(err["code"], code, "{args:?}: {err}");
    assert_eq!(err["exit_code"], 2);
    err
}

fn by_seq(messages: &[Value], seq: u64) -> &Value {
    messages
        .iter()
        .find(|m| m["seq"] == seq)
        .unwrap_or_else(|| panic!("no seq {seq} in {messages:?}"))
}

fn ids(v: &Value) -> BTreeSet<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_driven_end_to_end_through_the_cli() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let mut user = std::collections::BTreeMap::new();
    for name in ["alice", "bob", "carol", "dave"] {
        let login = tern.login(name, &format!("{name}@example.org")).await;
        user.insert(name, login["user_id"].as_u64().unwrap());
    }
    let (alice, bob, carol) = (user["alice"], user["bob"], user["carol"]);
    let (b, c) = (bob.to_string(), carol.to_string());

    // Alice creates the group with Bob and Carol: seq 1 Created, seq 2 MembersAdded.
    let created = json_ok(
        &tern,
        "alice",
        &["group", "create", "Ops", "--member", &b, "--member", &c],
    )
    .await;
    let group = &created[0];
    assert_eq!(group["type"], "chat");
    assert_eq!(group["kind"], "group");
    assert_eq!(ids(&group["members"]), BTreeSet::from([alice, bob, carol]));
    let chat = group["chat_id"].as_u64().unwrap().to_string();
    let sent_seq = |lines: Vec<Value>| {
        assert_eq!(lines[0]["type"], "sent", "{lines:?}");
        lines[0]["seq"].as_u64().unwrap()
    };

    // Send, reply, react, edit, delete: each a message of its own.
    let question = sent_seq(json_ok(&tern, "alice", &["send", &chat, "deploy at 5?"]).await);
    assert_eq!(question, 3);
    let q = question.to_string();
    let reply = sent_seq(json_ok(&tern, "bob", &["reply", &chat, &q, "yes"]).await);
    let reaction = sent_seq(json_ok(&tern, "carol", &["react", &chat, &q, "👍"]).await);
    let edit = sent_seq(json_ok(&tern, "alice", &["edit", &chat, &q, "deploy at 6?"]).await);
    let r = reply.to_string();
    // An admin may delete anyone's message in a group.
    let delete = sent_seq(json_ok(&tern, "alice", &["delete", &chat, &r]).await);
    assert_eq!([reply, reaction, edit, delete], [4, 5, 6, 7]);

    // Everyone's history: the edit shows at the target, the reply reads as deleted.
    let history = json_ok(&tern, "carol", &["history", &chat]).await;
    assert_eq!(seqs(&history), [1, 2, 3, 4, 5, 6, 7]);
    let m = by_seq(&history, 1);
    assert_eq!(
        (&m["kind"], &m["sender"]),
        (&"system".into(), &alice.into())
    );
    assert_eq!(m["system"]["change"], "created");
    assert_eq!(m["system"]["title"], "Ops");
    let m = by_seq(&history, 2);
    assert_eq!(m["system"]["change"], "members_added");
    assert_eq!(m["system"]["actor"], alice);
    assert_eq!(ids(&m["system"]["users"]), BTreeSet::from([bob, carol]));
    let m = by_seq(&history, 3);
    assert_eq!(
        (&m["kind"], &m["text"]),
        (&"text".into(), &"deploy at 6?".into())
    );
    assert_eq!(by_seq(&history, 4)["kind"], "deleted");
    let m = by_seq(&history, 5);
    assert_eq!(
        (&m["kind"], &m["target"], &m["emoji"]),
        (&"reaction".into(), &3.into(), &"👍".into())
    );
    assert_eq!(m["own"], true, "carol reacted");
    let m = by_seq(&history, 6);
    assert_eq!(
        (&m["kind"], &m["target"], &m["text"]),
        (&"edit".into(), &3.into(), &"deploy at 6?".into())
    );
    let m = by_seq(&history, 7);
    assert_eq!((&m["kind"], &m["target"]), (&"delete".into(), &4.into()));
    // People read the same history as sentences.
    let text = tern.run("bob", &["history", &chat]).await.ok().stdout;
    assert!(
        text.contains(&format!("user {alice} created the group \"Ops\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("user {carol} reacted 👍 to #3")),
        "{text}"
    );
    assert!(
        text.contains(&format!("user {alice} edited #3: deploy at 6?")),
        "{text}"
    );
    assert!(
        text.contains(&format!("user {alice} deleted #4 for everyone")),
        "{text}"
    );

    // Group info, as any member sees it.
    let info = json_ok(&tern, "bob", &["group", "info", &chat]).await;
    let info = &info[0];
    assert_fields(
        info,
        &[
            "type",
            "chat_id",
            "title",
            "description",
            "settings",
            "created_by",
            "created_ms",
            "members",
            "last_seq",
        ],
    );
    assert_eq!(
        (&info["title"], &info["created_by"]),
        (&"Ops".into(), &alice.into())
    );
    assert_eq!(info["settings"]["members_can_add"], false);
    let members = info["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    for m in members {
        assert_eq!(m["admin"], m["user_id"] == alice, "{m}");
        assert_eq!(m["since_seq"], 1, "{m}");
    }

    // Message receipts: Bob read the question; only its sender may ask.
    json_ok(&tern, "bob", &["read", &chat, &q]).await;
    let receipts = json_ok(&tern, "alice", &["receipts", &chat, &q]).await;
    let receipts = &receipts[0];
    assert_fields(
        receipts,
        &["type", "chat_id", "seq", "delivered", "read", "pending"],
    );
    assert_eq!(receipts["type"], "message_receipts");
    let readers: Vec<&Value> = receipts["read"].as_array().unwrap().iter().collect();
    assert_eq!(readers.len(), 1, "{receipts}");
    assert_eq!(readers[0]["user_id"], bob);
    assert!(readers[0]["at_ms"].as_u64().unwrap() > 0);
    let delivered = receipts["delivered"].as_array().unwrap();
    assert!(delivered.iter().any(|d| d["user_id"] == bob), "{receipts}");
    assert_eq!(
        delivered.len() as u64 + receipts["pending"].as_u64().unwrap(),
        2,
        "bob and carol, the members besides the sender: {receipts}"
    );
    json_refused(&tern, "carol", &["receipts", &chat, &q], "Forbidden").await;
    let text = tern
        .run("alice", &["receipts", &chat, &q])
        .await
        .ok()
        .stdout;
    assert!(
        text.contains(&format!("chat {chat} #3: delivered to ")),
        "{text}"
    );
    assert!(text.contains(&format!("read by user {bob} at ")), "{text}");
    let text = tern
        .run("alice", &["group", "info", &chat])
        .await
        .ok()
        .stdout;
    assert!(
        text.starts_with(&format!("group chat {chat} \"Ops\"")),
        "{text}"
    );
    assert!(
        text.contains(&format!("member user {alice} (admin) since #1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("member user {bob} since #1")),
        "{text}"
    );

    // A member who is not an admin may not remove: exit 2, Forbidden, said in words too.
    let err = json_refused(&tern, "bob", &["group", "remove", &chat, &c], "Forbidden").await;
    assert_eq!(err["code_number"], 21);
    assert!(
        err["message"].as_str().unwrap().starts_with("not allowed"),
        "{err}"
    );
    let run = tern.run("bob", &["group", "remove", &chat, &c]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("tern: not allowed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[Forbidden(21)]"), "{}", run.stderr);
    // A user who was never a member learns nothing: the answer of a chat that does not exist.
    let err = json_refused(&tern, "dave", &["group", "info", &chat], "NotFound").await;
    assert!(
        err["message"].as_str().unwrap().contains("no such chat"),
        "{err}"
    );

    // Bob deletes the question for himself only.
    let hidden = json_ok(&tern, "bob", &["delete", &chat, &q, "--for-me"]).await;
    assert_eq!(hidden[0]["type"], "hidden_for_me");
    assert_eq!(hidden[0]["seqs"], serde_json::json!([3]));
    let bobs = json_ok(&tern, "bob", &["history", &chat]).await;
    assert_eq!(by_seq(&bobs, 3)["kind"], "deleted");
    let alices = json_ok(&tern, "alice", &["history", &chat]).await;
    assert_eq!(by_seq(&alices, 3)["text"], "deploy at 6?");

    // Alice removes Carol: the system message is the last thing Carol gets, then chat_left.
    let removed = json_ok(&tern, "alice", &["group", "remove", &chat, &c]).await;
    let removed = &removed[0];
    assert_fields(
        removed,
        &["type", "chat_id", "seq", "msg_id", "ts_ms", "change"],
    );
    assert_eq!(
        (&removed["type"], &removed["change"]),
        (&"group_changed".into(), &"member_removed".into())
    );
    let at = removed["seq"].as_u64().unwrap();
    assert_eq!(at, 8);
    let count = (at + 1).to_string();
    let tail = tern
        .run(
            "carol",
            &[
                "--json",
                "tail",
                "--only",
                "message",
                "--only",
                "chat_left",
                "--count",
                &count,
                "--timeout",
                "60s",
            ],
        )
        .await
        .ok();
    let events = tail.json_lines();
    let last = &events[events.len() - 2];
    assert_eq!(
        (&last["seq"], &last["kind"]),
        (&at.into(), &"system".into())
    );
    assert_eq!(last["system"]["change"], "member_removed");
    assert_eq!(last["system"]["user"], carol);
    let left = events.last().unwrap();
    assert_fields(left, &["type", "chat_id", "at_seq", "pts"]);
    assert_eq!(
        (&left["type"], &left["at_seq"]),
        (&"chat_left".into(), &at.into())
    );
    // From then on Carol gets what a stranger gets.
    json_refused(&tern, "carol", &["group", "info", &chat], "NotFound").await;
    json_refused(&tern, "carol", &["send", &chat, "still here?"], "NotFound").await;

    // Title and settings; a group command on a direct chat is refused as not a group.
    let edited = json_ok(
        &tern,
        "alice",
        &["group", "edit", &chat, "--title", "Ops 2"],
    )
    .await;
    assert_eq!(edited[0]["change"], "info_changed");
    let set = json_ok(
        &tern,
        "alice",
        &["group", "settings", &chat, "--members-can-add", "true"],
    )
    .await;
    assert_eq!(set[0]["change"], "settings_changed");
    let info = json_ok(&tern, "bob", &["group", "info", &chat]).await;
    assert_eq!(info[0]["title"], "Ops 2");
    assert_eq!(info[0]["settings"]["members_can_add"], true);
    assert_eq!(info[0]["settings"]["members_can_edit_info"], true, "kept");
    let direct = json_ok(&tern, "alice", &["open", &b]).await;
    let direct = direct[0]["chat_id"].as_u64().unwrap().to_string();
    let err = json_refused(
        &tern,
        "alice",
        &["group", "info", &direct],
        "InvalidArgument",
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("not a group"),
        "{err}"
    );
    // Arguments the CLI can judge itself are usage errors (exit 1) before connecting.
    let run = tern.run("alice", &["group", "create", "  "]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let run = tern.run("alice", &["edit", &chat, &q, ""]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

/// `tern send-file` and `tern download` round-trip a file byte for byte; the receiver sees
/// a media message naming it; a user outside the chat is refused like for a missing id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_file_and_download_round_trip_a_file() {
    let server = TestServer::start().await;
    let p = pair(&server).await;
    p.tern.login("carol", "carol@example.org").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.pdf");
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..700_000u32).map(|i| (i * 31 % 251) as u8));
    std::fs::write(&file, &bytes).unwrap();

    let run = p
        .tern
        .run(
            "alice",
            &[
                "--json",
                "send-file",
                &p.chat.to_string(),
                file.to_str().unwrap(),
                "--caption",
                "q3",
            ],
        )
        .await
        .ok();
    let uploaded = &run.records("uploaded")[0];
    assert_eq!(uploaded["mime"], "application/pdf");
    assert_eq!(uploaded["kind"], "document");
    assert_eq!(uploaded["size"].as_u64(), Some(bytes.len() as u64));
    let media = uploaded["media"].as_str().unwrap().to_owned();
    assert_eq!(run.records("sent").len(), 1);

    let history = p
        .tern
        .run("bob", &["--json", "history", &p.chat.to_string()])
        .await
        .ok();
    let messages = history.records("message");
    let m = messages.iter().find(|m| m["kind"] == "media").unwrap();
    assert_eq!(m["media"]["id"].as_str(), Some(media.as_str()));

    let out = dir.path().join("copy.pdf");
    let run = p
        .tern
        .run(
            "bob",
            &["--json", "download", &media, out.to_str().unwrap()],
        )
        .await
        .ok();
    assert_eq!(run.records("downloaded").len(), 1);
    assert!(std::fs::read(&out).unwrap() == bytes, "byte for byte");

    let denied = p
        .tern
        .run(
            "carol",
            &[
                "--json",
                "download",
                &media,
                dir.path().join("no.pdf").to_str().unwrap(),
            ],
        )
        .await;
    assert_ne!(denied.code, 0);
    assert!(denied.stderr.contains("NotFound"), "{}", denied.stderr);
    let _ = p.alice;
}
