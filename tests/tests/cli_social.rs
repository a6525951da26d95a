//! The social commands of the `tern` CLI (docs/cli.md, "Profiles, contacts, blocking and
//! privacy" and "Presence and typing"), driven as subprocesses against a real server, as
//! `cli.rs` drives the chat commands: profiles and usernames, `lookup` (one `not_found` shape
//! for every miss), contacts, blocking (the blocked sender is acknowledged and never told, the
//! blocker never gets the message), privacy settings and what they hide, and the live-only
//! lines: `presence`, `watch`, `tail --watch` and `typing` reaching a running `tail`.
//!
//! Long-running children (`tail`, `watch`) are read line by line with a deadline on every read,
//! stopped with SIGTERM and reaped at the end of each test; nothing waits without a bound, and
//! nothing asserts how fast anything happened.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tern_tests::TestServer;
use tern_tests::cli::{Run, Tern};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

/// The longest any one expected line or exit is waited for.
const WAIT: Duration = Duration::from_secs(30);

/// A user id nobody holds (ids are sparse, so this one is free on a fresh server).
const GHOST: u64 = 0x1f_ffff_ffff_fff3;

/// Asserts that `v` has exactly the documented `fields` (docs/cli.md), no more, no fewer.
fn assert_fields(v: &Value, fields: &[&str]) {
    let got: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(got, want, "fields of {v}");
}

const PROFILE_FIELDS: [&str; 7] = [
    "type",
    "user_id",
    "username",
    "display_name",
    "about",
    "avatar",
    "updated_ms",
];

/// Runs `tern --json args` as `profile`, expecting success; its JSON lines.
async fn json_ok(tern: &Tern, profile: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    tern.run(profile, &all).await.ok().json_lines()
}

/// The one JSON line of a successful `tern --json args`, checked to be of type `kind`.
async fn json_one(tern: &Tern, profile: &str, args: &[&str], kind: &str) -> Value {
    let mut lines = json_ok(tern, profile, args).await;
    assert_eq!(lines.len(), 1, "{args:?}: one line: {lines:?}");
    let line = lines.remove(0);
    assert_eq!(line["type"], kind, "{args:?}: {line}");
    line
}

/// Runs `tern --json args` as `profile`, expecting failure with exit `exit`, `error` kind and
/// server `code` (`None`: no code, as for usage errors); nothing on stdout. The error object.
async fn json_err(
    tern: &Tern,
    profile: &str,
    args: &[&str],
    exit: i32,
    error: &str,
    code: Option<&str>,
) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = tern.run(profile, &all).await;
    assert_eq!(run.code, exit, "{args:?}: {run:?}");
    assert_eq!(run.stdout, "", "{args:?}: nothing on stdout");
    let err: Value = serde_json::from_str(run.stderr.trim())
        .unwrap_or_else(|e| panic!("{args:?}: stderr is not one JSON error ({e}): {run:?}"));
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["error"], error, "{args:?}: {err}");
    assert_eq!(err["code"], code.map_or(Value::Null, Value::from), "{err}");
    assert_eq!(err["exit_code"], exit, "{err}");
    err
}

/// The text-mode stdout of a successful run.
async fn text_ok(tern: &Tern, profile: &str, args: &[&str]) -> String {
    tern.run(profile, args).await.ok().stdout
}

fn user_ids(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["user_id"].as_u64().unwrap())
        .collect()
}

/// Logs `name` in as `name@example.org`; its user id.
async fn login(tern: &Tern, name: &str) -> u64 {
    tern.login(name, &format!("{name}@example.org")).await["user_id"]
        .as_u64()
        .unwrap()
}

/// How a [`Live`] child ended.
#[derive(Debug)]
struct Ended {
    /// The lines read after the last `next_where`.
    rest: Vec<Value>,
    /// Every line it printed.
    all: Vec<Value>,
    /// Exit code (-1 if killed by a signal).
    code: i32,
    stderr: String,
}

/// A long-running `tern --json ...` child whose stdout is read one line at a time.
struct Live {
    what: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// Every line read so far, in order.
    seen: Vec<Value>,
}

impl Live {
    fn spawn(tern: &Tern, profile: &str, args: &[&str]) -> Live {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let mut child = tern.spawn(profile, &all);
        let stdout = child.stdout.take().unwrap();
        Live {
            what: format!("{profile}: tern {}", all.join(" ")),
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pred` and returns it; panics (with everything read) if
    /// none has within [`WAIT`], or the child closed its stdout first.
    async fn next_where(&mut self, expect: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line:?}", self.what));
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(Ok(None)) => {
                    let stderr = self.stderr().await;
                    panic!(
                        "{}: stdout closed before {expect}; read {:?}; stderr {stderr:?}",
                        self.what, self.seen
                    )
                }
                Ok(Err(e)) => panic!("{}: reading stdout: {e}", self.what),
                Err(_) => panic!(
                    "{}: no {expect} within {WAIT:?}; read {:?}",
                    self.what, self.seen
                ),
            }
        }
    }

    /// The next `presence` line about `user`.
    async fn presence_of(&mut self, user: u64) -> Value {
        let v = self
            .next_where(&format!("presence of user {user}"), |v| {
                v["type"] == "presence" && v["user_id"] == user
            })
            .await;
        assert_presence_fields(&v);
        v
    }

    /// The next `presence` line about `user` in `state`: earlier lines about `user` are in
    /// other states only if `allowed` says so (a user may flap through several).
    async fn presence_until(&mut self, user: u64, state: &str, allowed: &[&str]) -> Value {
        loop {
            let v = self.presence_of(user).await;
            if v["state"] == state {
                return v;
            }
            let s = v["state"].as_str().unwrap();
            assert!(
                allowed.contains(&s),
                "{}: user {user} went {s} before {state}: {:?}",
                self.what,
                self.seen
            );
        }
    }

    async fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = tokio::time::timeout(WAIT, e.read_to_string(&mut s)).await;
        }
        s
    }

    /// Waits for the child to exit by itself (`--count`); the rest of its stdout, its exit code
    /// and its stderr.
    async fn exit(mut self) -> Ended {
        let mut rest = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => rest.push(serde_json::from_str(&line).unwrap()),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => panic!("{}: reading stdout: {e}", self.what),
                Err(_) => {
                    let _ = self.child.start_kill();
                    panic!("{}: did not exit within {WAIT:?}", self.what)
                }
            }
        }
        let stderr = self.stderr().await;
        let status = tokio::time::timeout_at(deadline, self.child.wait()).await;
        let code = match status {
            Ok(Ok(s)) => s.code().unwrap_or(-1),
            other => {
                let _ = self.child.start_kill();
                panic!("{}: no exit status: {other:?}", self.what)
            }
        };
        self.seen.extend(rest.iter().cloned());
        Ended {
            rest,
            all: self.seen,
            code,
            stderr,
        }
    }

    /// Stops the child with SIGTERM (a clean exit 0 closes its connection at once); the rest of
    /// its stdout, its exit code and its stderr.
    async fn term(self) -> Ended {
        let pid = self.child.id().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -TERM {pid}");
        self.exit().await
    }
}

fn assert_presence_fields(v: &Value) {
    if v["state"] == "last_seen" {
        assert_fields(v, &["type", "user_id", "state", "last_seen_ms"]);
        assert!(v["last_seen_ms"].as_u64().unwrap() > 0, "{v}");
    } else {
        assert_fields(v, &["type", "user_id", "state"]);
        assert!(v["state"] == "online" || v["state"] == "hidden", "{v}");
    }
}

/// `tern presence user` as `profile`: the one line's state.
async fn presence_state(tern: &Tern, profile: &str, user: u64) -> String {
    let u = user.to_string();
    let p = json_one(tern, profile, &["presence", &u], "presence").await;
    assert_presence_fields(&p);
    assert_eq!(p["user_id"], user);
    p["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_usernames_and_lookup() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    let a = alice.to_string();

    // A fresh profile is empty, as its owner and as another user sees it.
    let own = json_one(&tern, "alice", &["profile"], "profile").await;
    assert_fields(&own, &PROFILE_FIELDS);
    assert_eq!(
        (&own["user_id"], &own["display_name"], &own["username"]),
        (&alice.into(), &"".into(), &Value::Null)
    );
    let seen = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(seen["display_name"], "");

    // Alice sets her name, about and username in one command: one `profile` line, the result.
    let set = json_one(
        &tern,
        "alice",
        &[
            "profile",
            "--name",
            "Alice Liddell",
            "--about",
            "down the rabbit hole",
            "--username",
            "Alice_W",
        ],
        "profile",
    )
    .await;
    assert_fields(&set, &PROFILE_FIELDS);
    assert_eq!(set["user_id"], alice);
    assert_eq!(set["display_name"], "Alice Liddell");
    assert_eq!(set["about"], "down the rabbit hole");
    assert_eq!(set["username"], "alice_w", "usernames are lowercased");
    assert_eq!(set["avatar"], Value::Null);
    assert!(set["updated_ms"].as_u64().unwrap() > 0, "{set}");
    // It was stored: a later `profile` reads the same.
    let again = json_one(&tern, "alice", &["profile"], "profile").await;
    assert_eq!(again, set);

    // Bob finds her by @username, by bare name in any case, and by her identifier.
    for query in [
        "@alice_w",
        "ALICE_W",
        "alice@example.org",
        " Alice@Example.org ",
    ] {
        let found = json_one(&tern, "bob", &["lookup", query], "profile").await;
        assert_fields(&found, &PROFILE_FIELDS);
        assert_eq!(found["user_id"], alice, "{query}");
        assert_eq!(found["display_name"], "Alice Liddell", "{query}");
        assert_eq!(found["username"], "alice_w", "{query}");
        assert_eq!(found["about"], "down the rabbit hole", "{query}");
    }
    let text = text_ok(&tern, "bob", &["lookup", "@alice_w"]).await;
    assert_eq!(
        text.trim_end(),
        format!("user {alice} @alice_w \"Alice Liddell\" about \"down the rabbit hole\"")
    );
    // And by id.
    let by_id = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(
        by_id, set,
        "bob sees all of it (about is for everyone by default)"
    );

    // Every miss has the one documented shape: exit 0, a `not_found` line naming the query.
    // An unregistered phone number, an unregistered email address, an unknown username and
    // one that could never be a username look alike.
    for query in [
        "+15559999999",
        "nobody@example.org",
        "@nobody_here",
        "nobody_here",
        "@1-not-a-name",
    ] {
        let miss = json_one(&tern, "bob", &["lookup", query], "not_found").await;
        assert_fields(&miss, &["type", "query"]);
        assert_eq!(miss["query"], query, "the query as typed");
    }
    let run = tern.run("bob", &["lookup", "+15559999999"]).await.ok();
    assert_eq!(run.stdout, "nobody found for \"+15559999999\"\n");
    assert_eq!(run.stderr, "");
    // A user id nobody holds is refused as not found.
    let ghost = GHOST.to_string();
    let err = json_err(
        &tern,
        "bob",
        &["profile", &ghost],
        2,
        "refused",
        Some("NotFound"),
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("no such user"),
        "{err}"
    );

    // An invalid username is refused before it is sent (exit 1), naming the rule.
    for bad in ["1abc", "ab", "a..b", "abc.", "ab-c", "al ice"] {
        let err = json_err(
            &tern,
            "bob",
            &["profile", "--username", bad],
            1,
            "usage",
            None,
        )
        .await;
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("3 to 32 of a-z, 0-9, _ and .")
                && message.contains("starts with a letter"),
            "{bad}: {message:?}"
        );
    }
    let run = tern.run("bob", &["profile", "--username", "1abc"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.starts_with("tern: a username is 3 to 32"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    // A taken one, in another case, is refused by the server with its typed code (exit 2).
    let err = json_err(
        &tern,
        "bob",
        &["profile", "--username", "ALICE_W"],
        2,
        "refused",
        Some("InvalidArgument"),
    )
    .await;
    assert_eq!(err["code_number"], 22, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("username is taken"),
        "{err}"
    );
    // None of it changed Bob's profile; Alice keeps hers.
    let bobs = json_one(&tern, "bob", &["profile"], "profile").await;
    assert_eq!(
        (&bobs["user_id"], &bobs["username"]),
        (&bob.into(), &Value::Null)
    );
    let found = json_one(&tern, "bob", &["lookup", "@alice_w"], "profile").await;
    assert_eq!(found["user_id"], alice);

    // An over-long name is a usage error; the show form takes no change flags.
    let long = "x".repeat(1000);
    json_err(
        &tern,
        "bob",
        &["profile", "--name", &long],
        1,
        "usage",
        None,
    )
    .await;
    let run = tern.run("bob", &["profile", &a, "--name", "X"]).await;
    assert_eq!(run.code, 1, "{run:?}");

    // Clearing the username frees it: nobody is found by it any more.
    let cleared = json_one(&tern, "alice", &["profile", "--clear-username"], "profile").await;
    assert_eq!(cleared["username"], Value::Null);
    assert_eq!(cleared["display_name"], "Alice Liddell", "the rest stays");
    json_one(&tern, "bob", &["lookup", "@alice_w"], "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_added_listed_and_removed() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    let carol = login(&tern, "carol").await;
    let (a, c) = (alice.to_string(), carol.to_string());
    json_ok(&tern, "alice", &["profile", "--name", "Alice"]).await;
    json_ok(&tern, "carol", &["profile", "--name", "Carol"]).await;

    // Nobody yet: no lines at all.
    assert_eq!(
        json_ok(&tern, "bob", &["contacts"]).await,
        Vec::<Value>::new()
    );
    assert_eq!(text_ok(&tern, "bob", &["contacts"]).await, "");

    let added = json_one(&tern, "bob", &["contacts", "add", &a], "contact").await;
    assert_fields(&added, &["type", "user_id", "contact"]);
    assert_eq!(
        (&added["user_id"], &added["contact"]),
        (&alice.into(), &true.into())
    );
    // Adding twice is one contact.
    json_one(&tern, "bob", &["contacts", "add", &a], "contact").await;
    let list = json_ok(&tern, "bob", &["contacts"]).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["type"], "profile");
    assert_fields(&list[0], &PROFILE_FIELDS);
    assert_eq!(
        (&list[0]["user_id"], &list[0]["display_name"]),
        (&alice.into(), &"Alice".into())
    );
    // A contact is one way: Alice has none.
    assert_eq!(
        json_ok(&tern, "alice", &["contacts"]).await,
        Vec::<Value>::new()
    );

    let text = text_ok(&tern, "bob", &["contacts", "add", &c]).await;
    assert_eq!(text, format!("user {carol} is now a contact\n"));
    let list = json_ok(&tern, "bob", &["contacts"]).await;
    let mut want = vec![alice, carol];
    want.sort_unstable();
    assert_eq!(user_ids(&list), want, "both, in id order");
    assert!(list.iter().all(|p| p["type"] == "profile"), "{list:?}");

    // Bob is now Alice's audience for profile changes: hers reach his `tail`.
    json_ok(&tern, "alice", &["profile", "--name", "Alice 2"]).await;
    let tail = json_ok(
        &tern,
        "bob",
        &[
            "tail",
            "--only",
            "profile_changed",
            "--count",
            "1",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_fields(&tail[0], &["type", "user_id", "pts"]);
    assert_eq!(tail[0]["user_id"], alice);

    // Removing: `contact: false`, then only Carol is left; removing again is harmless.
    let removed = json_one(&tern, "bob", &["contacts", "remove", &a], "contact").await;
    assert_eq!(
        (&removed["user_id"], &removed["contact"]),
        (&alice.into(), &false.into())
    );
    assert_eq!(
        user_ids(&json_ok(&tern, "bob", &["contacts"]).await),
        [carol]
    );
    json_one(&tern, "bob", &["contacts", "remove", &a], "contact").await;
    let text = text_ok(&tern, "bob", &["contacts", "remove", &c]).await;
    assert_eq!(text, format!("user {carol} is no longer a contact\n"));
    assert_eq!(
        json_ok(&tern, "bob", &["contacts"]).await,
        Vec::<Value>::new()
    );

    // No longer a contact (and sharing no chat), Bob is not told of Alice's next change: his
    // next update is the chat Alice opens with him afterwards, not a profile change.
    json_ok(&tern, "alice", &["profile", "--name", "Alice 3"]).await;
    let b = bob.to_string();
    json_ok(&tern, "alice", &["open", &b]).await;
    let tail = json_ok(
        &tern,
        "bob",
        &[
            "tail",
            "--only",
            "profile_changed",
            "--only",
            "chat_joined",
            "--count",
            "1",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(tail[0]["type"], "chat_joined", "{tail:?}");

    // Refusals: oneself is an invalid argument, an id nobody holds is not found.
    let me = bob.to_string();
    json_err(
        &tern,
        "bob",
        &["contacts", "add", &me],
        2,
        "refused",
        Some("InvalidArgument"),
    )
    .await;
    let ghost = GHOST.to_string();
    let err = json_err(
        &tern,
        "bob",
        &["contacts", "add", &ghost],
        2,
        "refused",
        Some("NotFound"),
    )
    .await;
    assert!(
        err["message"].as_str().unwrap().contains("no such user"),
        "{err}"
    );
    assert_eq!(
        json_ok(&tern, "bob", &["contacts"]).await,
        Vec::<Value>::new()
    );
    // Not a user id at all: usage.
    let run = tern.run("bob", &["contacts", "add", "alice"]).await;
    assert_eq!(run.code, 1, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_withholds_the_blocked_users_messages_without_telling_them() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    let (a, b) = (alice.to_string(), bob.to_string());
    json_ok(
        &tern,
        "alice",
        &["profile", "--name", "Alice", "--about", "hi"],
    )
    .await;
    let open = json_one(&tern, "alice", &["open", &b], "chat").await;
    let chat = open["chat_id"].as_u64().unwrap();
    let ch = chat.to_string();

    assert_eq!(
        json_ok(&tern, "alice", &["blocked"]).await,
        Vec::<Value>::new()
    );
    let blocked = json_one(&tern, "alice", &["block", &b], "blocked").await;
    assert_fields(&blocked, &["type", "user_id", "blocked"]);
    assert_eq!(
        (&blocked["user_id"], &blocked["blocked"]),
        (&bob.into(), &true.into())
    );
    // Blocking twice is one block.
    json_one(&tern, "alice", &["block", &b], "blocked").await;
    let list = json_ok(&tern, "alice", &["blocked"]).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_fields(&list[0], &["type", "user_id", "blocked"]);
    assert_eq!(
        (&list[0]["user_id"], &list[0]["blocked"]),
        (&bob.into(), &true.into())
    );
    assert_eq!(
        text_ok(&tern, "alice", &["blocked"]).await,
        format!("user {bob} blocked\n")
    );
    // Blocks are one way: Bob blocked nobody.
    assert_eq!(
        json_ok(&tern, "bob", &["blocked"]).await,
        Vec::<Value>::new()
    );

    // Bob's message is acknowledged like any other (he is not told)...
    let sent = json_one(&tern, "bob", &["send", &ch, "while blocked"], "sent").await;
    assert_eq!(sent["chat_id"], chat);
    let withheld = sent["seq"].as_u64().unwrap();
    let run = tern.run("bob", &["history", &ch]).await.ok();
    assert!(
        run.stdout.contains("while blocked"),
        "bob reads his own: {}",
        run.stdout
    );
    // ...stays pending, never delivered...
    let w = withheld.to_string();
    let info = json_one(&tern, "bob", &["receipts", &ch, &w], "message_receipts").await;
    assert_eq!(info["pending"], 1, "{info}");
    assert_eq!(info["delivered"], serde_json::json!([]), "{info}");
    // ...and Alice's history does not have it.
    let history = json_ok(&tern, "alice", &["history", &ch]).await;
    assert!(
        history
            .iter()
            .all(|m| m["seq"] != withheld && m["text"] != "while blocked"),
        "withheld from the blocker: {history:?}"
    );

    // Alice may not message Bob while she blocks him (exit 2, Forbidden, said so).
    let err = json_err(
        &tern,
        "alice",
        &["send", &ch, "hi bob"],
        2,
        "refused",
        Some("Forbidden"),
    )
    .await;
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("unblock this user"),
        "{err}"
    );
    // Bob still finds her, without what the block hides (about), name included.
    let found = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(
        (&found["display_name"], &found["about"]),
        (&"Alice".into(), &Value::Null)
    );
    // Blocking oneself or nobody is refused.
    let me = alice.to_string();
    json_err(
        &tern,
        "alice",
        &["block", &me],
        2,
        "refused",
        Some("InvalidArgument"),
    )
    .await;
    let ghost = GHOST.to_string();
    json_err(
        &tern,
        "alice",
        &["block", &ghost],
        2,
        "refused",
        Some("NotFound"),
    )
    .await;

    // Unblock: `blocked: false`, the list is empty (twice is harmless).
    let un = json_one(&tern, "alice", &["unblock", &b], "blocked").await;
    assert_eq!(
        (&un["user_id"], &un["blocked"]),
        (&bob.into(), &false.into())
    );
    assert_eq!(
        text_ok(&tern, "alice", &["unblock", &b]).await,
        format!("user {bob} not blocked\n")
    );
    assert_eq!(
        json_ok(&tern, "alice", &["blocked"]).await,
        Vec::<Value>::new()
    );
    assert_eq!(text_ok(&tern, "alice", &["blocked"]).await, "");
    let found = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(found["about"], "hi", "visible again");

    // After it, Bob's next message reaches Alice; the withheld one stays withheld. Alice's tail
    // prints messages in order, so the first it prints is the new one, not the withheld one.
    let after = json_one(&tern, "bob", &["send", &ch, "after unblock"], "sent").await;
    let after = after["seq"].as_u64().unwrap();
    assert_eq!(after, withheld + 1);
    let tail = json_ok(
        &tern,
        "alice",
        &[
            "tail",
            "--only",
            "message",
            "--count",
            "1",
            "--timeout",
            "60s",
        ],
    )
    .await;
    assert_eq!(tail.len(), 1, "{tail:?}");
    assert_eq!(
        (&tail[0]["seq"], &tail[0]["text"]),
        (&after.into(), &"after unblock".into())
    );
    let history = json_ok(&tern, "alice", &["history", &ch]).await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["after unblock"], "{history:?}");
    // And Alice may write to Bob again.
    json_one(&tern, "alice", &["send", &ch, "hi bob"], "sent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_settings_are_shown_changed_and_applied() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    let (a, b) = (alice.to_string(), bob.to_string());
    json_ok(
        &tern,
        "alice",
        &["profile", "--name", "Alice", "--about", "secret"],
    )
    .await;
    json_ok(&tern, "alice", &["contacts", "add", &b]).await;
    let fields = ["type", "last_seen", "online", "photo", "about"];

    // The defaults: last seen and online for contacts, photo and about for everyone.
    let shown = json_one(&tern, "alice", &["privacy"], "privacy").await;
    assert_fields(&shown, &fields);
    let defaults = serde_json::json!({
        "type": "privacy", "last_seen": "contacts", "online": "contacts",
        "photo": "everyone", "about": "everyone",
    });
    assert_eq!(shown, defaults);

    // One flag changes that setting only; the change is stored.
    let set = json_one(
        &tern,
        "alice",
        &["privacy", "--last-seen", "nobody"],
        "privacy",
    )
    .await;
    let mut want = defaults.clone();
    want["last_seen"] = "nobody".into();
    assert_eq!(set, want);
    assert_eq!(
        json_one(&tern, "alice", &["privacy"], "privacy").await,
        want
    );
    // Bob's settings are his own.
    assert_eq!(
        json_one(&tern, "bob", &["privacy"], "privacy").await,
        defaults
    );

    // About for contacts: Bob, her contact, still reads it.
    let set = json_one(
        &tern,
        "alice",
        &["privacy", "--about", "Contacts"],
        "privacy",
    )
    .await;
    want["about"] = "contacts".into();
    assert_eq!(set, want, "case-insensitive");
    let seen = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(seen["about"], "secret");
    // About for contacts except Bob (the hyphenated spelling too): he no longer does; the name
    // stays visible and Alice still sees her own.
    let except = format!("contacts-except:{bob}");
    let set = json_one(&tern, "alice", &["privacy", "--about", &except], "privacy").await;
    want["about"] = format!("contacts_except:{bob}").into();
    assert_eq!(set, want);
    let seen = json_one(&tern, "bob", &["profile", &a], "profile").await;
    assert_eq!(
        (&seen["display_name"], &seen["about"]),
        (&"Alice".into(), &Value::Null)
    );
    let own = json_one(&tern, "alice", &["profile"], "profile").await;
    assert_eq!(own["about"], "secret");
    let text = text_ok(&tern, "alice", &["privacy"]).await;
    assert_eq!(
        text,
        format!(
            "last seen: nobody, online: contacts, photo: everyone, about: contacts_except:{bob}\n"
        )
    );

    // Bad values are usage errors (exit 1) that name the accepted ones; nothing changes.
    for args in [
        ["privacy", "--online", "friends"],
        ["privacy", "--last-seen", ""],
        ["privacy", "--about", "contacts_except:bob"],
    ] {
        let err = json_err(&tern, "alice", &args, 1, "usage", None).await;
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("is not an audience") || message.contains("is not a user id"),
            "{args:?}: {message:?}"
        );
    }
    let run = tern.run("alice", &["privacy", "--online", "friends"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("use everyone, contacts, nobody or contacts_except:ID,ID"),
        "{}",
        run.stderr
    );
    assert_eq!(
        json_one(&tern, "alice", &["privacy"], "privacy").await,
        want
    );

    // Several at once.
    let set = json_one(
        &tern,
        "alice",
        &[
            "privacy", "--online", "nobody", "--photo", "contacts", "--about", "everyone",
        ],
        "privacy",
    )
    .await;
    let all = serde_json::json!({
        "type": "privacy", "last_seen": "nobody", "online": "nobody",
        "photo": "contacts", "about": "everyone",
    });
    assert_eq!(set, all);
    assert_eq!(json_one(&tern, "alice", &["privacy"], "privacy").await, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_reach_running_tails() {
    // A short debounce only makes going offline show sooner; nothing below depends on it.
    let server = TestServer::start_with(|c| c.presence.debounce_ms = 200).await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    // Bob's second device, for his commands while his `tail` holds the `bob` profile.
    let bob2 = tern.login("bob2", "bob@example.org").await;
    assert_eq!(bob2["user_id"], bob);
    let (a, b) = (alice.to_string(), bob.to_string());
    // Online and last seen are for contacts by default, and reciprocal: each adds the other.
    json_ok(&tern, "alice", &["contacts", "add", &b]).await;
    json_ok(&tern, "bob", &["contacts", "add", &a]).await;
    let open = json_one(&tern, "alice", &["open", &b], "chat").await;
    let chat = open["chat_id"].as_u64().unwrap();
    let ch = chat.to_string();

    // A user id nobody holds reads as hidden (never seen); a user is required.
    assert_eq!(presence_state(&tern, "bob2", GHOST).await, "hidden");
    let run = tern.run("bob2", &["presence"]).await;
    assert_eq!(run.code, 1, "a user is required: {run:?}");

    // Alice's commands have ended: once the server has noticed (bounded), she is last seen.
    let mut state = String::new();
    for _ in 0..100 {
        state = presence_state(&tern, "bob2", alice).await;
        if state != "online" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "last_seen");

    // Bob's tail watches Alice; its first line is her presence now. Bob2 watches her too,
    // for two lines.
    let mut tail = Live::spawn(
        &tern,
        "bob",
        &[
            "tail",
            "--watch",
            &a,
            "--only",
            "presence",
            "--only",
            "typing",
            "--timeout",
            "5m",
        ],
    );
    let first = tail.presence_of(alice).await;
    assert_eq!(first["state"], "last_seen", "{first}");
    assert_eq!(
        tail.seen.len(),
        1,
        "the snapshot comes first: {:?}",
        tail.seen
    );
    let mut watch = Live::spawn(
        &tern,
        "bob2",
        &["watch", &a, "--count", "2", "--timeout", "5m"],
    );
    let snapshot = watch.presence_of(alice).await;
    assert_eq!(snapshot["state"], "last_seen", "{snapshot}");

    // Alice connects (a tail of her own): both see her come online.
    let alice_tail = Live::spawn(
        &tern,
        "alice",
        &["tail", "--only", "message", "--timeout", "5m"],
    );
    tail.presence_until(alice, "online", &[]).await;
    let ended = watch.exit().await;
    assert_eq!(ended.code, 0, "watch --count 2 exits 0: {}", ended.stderr);
    let rest = ended.rest;
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(
        (&rest[0]["user_id"], &rest[0]["state"]),
        (&alice.into(), &"online".into())
    );
    // `presence` agrees while her tail runs (asked from Bob's second device: his tail holds
    // the `bob` profile).
    assert_eq!(presence_state(&tern, "bob2", alice).await, "online");
    let text = text_ok(&tern, "bob2", &["presence", &a]).await;
    assert_eq!(text, format!("user {alice} is online\n"));

    // Alice's tail stops: Bob's tail prints her last seen.
    let ended = alice_tail.term().await;
    assert_eq!(ended.code, 0, "SIGTERM stops tail with 0: {ended:?}");
    let gone = tail.presence_until(alice, "last_seen", &[]).await;
    assert!(gone["last_seen_ms"].as_u64().unwrap() >= first["last_seen_ms"].as_u64().unwrap());

    // Alice types in the chat: Bob's running tail prints it, then the stop. (Her `typing`
    // commands connect, so presence lines about her may come in between: they are skipped.)
    let sent = json_one(&tern, "alice", &["typing", &ch], "typing_sent").await;
    assert_fields(&sent, &["type", "chat_id", "typing"]);
    assert_eq!(
        (&sent["chat_id"], &sent["typing"]),
        (&chat.into(), &true.into())
    );
    let typing = tail
        .next_where("a typing line", |v| v["type"] == "typing")
        .await;
    assert_fields(
        &typing,
        &["type", "chat_id", "user_id", "typing", "datagram"],
    );
    assert_eq!(
        (&typing["chat_id"], &typing["user_id"], &typing["typing"]),
        (&chat.into(), &alice.into(), &true.into())
    );
    assert!(typing["datagram"].is_boolean(), "{typing}");
    let text = text_ok(&tern, "alice", &["typing", &ch, "--stop"]).await;
    assert!(
        text.starts_with(&format!("chat {chat}: told the members")) && text.contains("stopped"),
        "{text:?}"
    );
    let stopped = tail
        .next_where("a typing stop", |v| v["type"] == "typing")
        .await;
    assert_eq!(
        (&stopped["chat_id"], &stopped["user_id"], &stopped["typing"]),
        (&chat.into(), &alice.into(), &false.into())
    );

    // Alice sees Bob online (his tail runs); hiding her own online and last seen hides his
    // from her (reciprocal), and hides hers from Bob.
    assert_eq!(presence_state(&tern, "alice", bob).await, "online");
    json_ok(
        &tern,
        "alice",
        &["privacy", "--online", "nobody", "--last-seen", "nobody"],
    )
    .await;
    assert_eq!(presence_state(&tern, "alice", bob).await, "hidden");
    assert_eq!(presence_state(&tern, "bob2", alice).await, "hidden");
    let text = text_ok(&tern, "bob2", &["presence", &a]).await;
    assert_eq!(text, format!("user {alice}: presence hidden\n"));
    // Given back, Bob sees her last seen again.
    json_ok(
        &tern,
        "alice",
        &["privacy", "--online", "contacts", "--last-seen", "contacts"],
    )
    .await;
    assert_eq!(presence_state(&tern, "bob2", alice).await, "last_seen");

    // Bob's tail stops cleanly. Every line was presence or typing (as `--only` asked), live
    // only: none carries a pts, and a second tail does not print them again.
    let ended = tail.term().await;
    assert_eq!(ended.code, 0, "{ended:?}");
    for line in &ended.all {
        assert!(
            line["type"] == "presence" || line["type"] == "typing",
            "{line}"
        );
        assert!(line.get("pts").is_none(), "{line}");
    }
    let typing_lines: Vec<&Value> = ended.all.iter().filter(|v| v["type"] == "typing").collect();
    assert_eq!(
        typing_lines.len(),
        2,
        "one start, one stop: {typing_lines:?}"
    );
    let again = tern
        .run(
            "bob",
            &[
                "--json",
                "tail",
                "--only",
                "presence",
                "--only",
                "typing",
                "--timeout",
                "1s",
            ],
        )
        .await
        .ok();
    assert_eq!(again.stdout, "", "nothing live is replayed");
}

/// `tail`'s text mode prints typing and presence as sentences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_typing_and_presence_as_text() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    let alice = login(&tern, "alice").await;
    let bob = login(&tern, "bob").await;
    let (a, b) = (alice.to_string(), bob.to_string());
    let open = json_one(&tern, "alice", &["open", &b], "chat").await;
    let chat = open["chat_id"].as_u64().unwrap();
    let ch = chat.to_string();

    // Not contacts: Alice's presence is hidden from Bob, but her typing in their chat is not.
    let mut child = tern.spawn(
        "bob",
        &[
            "tail", "--watch", &a, "--only", "presence", "--only", "typing", "--count", "2",
        ],
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the snapshot line in time")
        .unwrap()
        .unwrap();
    assert_eq!(first, format!("user {alice}: presence hidden"));
    json_ok(&tern, "alice", &["typing", &ch]).await;
    let second = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the typing line in time")
        .unwrap()
        .unwrap();
    assert_eq!(second, format!("chat {chat}: user {alice} is typing"));
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("tail --count 2 exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let last = tokio::time::timeout(WAIT, lines.next_line()).await;
    assert_eq!(last.expect("stdout closes").unwrap(), None, "nothing more");
}

/// Checks a `Run` failed as a usage error naming `what`.
fn assert_usage(run: &Run, what: &str) {
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(what), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn social_commands_need_a_login_and_valid_arguments() {
    let server = TestServer::start().await;
    let tern = Tern::new(&server);
    for args in [
        &["profile"][..],
        &["lookup", "@someone"],
        &["contacts"],
        &["blocked"],
        &["privacy"],
        &["presence", "1"],
        &["typing", "1"],
    ] {
        let run = tern.run("nobody", args).await;
        assert_usage(&run, "not logged in");
    }
    tern.login("zed", "zed@example.org").await;
    for args in [
        &["block"][..],
        &["block", "x"],
        &["unblock", "-1"],
        &["watch"],
        &["typing", "chat"],
        &["contacts", "add"],
        &["profile", "--username", "a", "--clear-username"],
    ] {
        let run = tern.run("zed", args).await;
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?}");
    }
}
