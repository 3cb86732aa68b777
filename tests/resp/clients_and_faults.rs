//! Real clients (the `redis` crate, `redis-cli`), authentication and connection limits, node faults and node error replies, malformed input and graceful shutdown.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_and_redis_cli_as_clients() {
    let tc = TestCluster::start(3).await;
    let addr = resp_addr(&tc);

    // RESP2 and RESP3 through the redis crate, pipelined.
    for (url, tag) in [
        (format!("redis://{addr}"), "two"),
        (format!("redis://{addr}?protocol=resp3"), "three"),
    ] {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut pipe = redis::pipe();
        for i in 0..200 {
            pipe.cmd("SET").arg(format!("{tag}:{i}")).arg(i).ignore();
        }
        for i in 0..200 {
            pipe.cmd("GET").arg(format!("{tag}:{i}"));
        }
        let got: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
        assert_eq!(got, (0..200).collect::<Vec<i64>>(), "{tag}");
        // A read right after a write of the same key in one pipeline sees it.
        let (a, b): (String, String) = redis::pipe()
            .cmd("SET")
            .arg("seq")
            .arg("1")
            .ignore()
            .cmd("APPEND")
            .arg("seq")
            .arg("2")
            .ignore()
            .cmd("GET")
            .arg("seq")
            .cmd("GETDEL")
            .arg("seq")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("12", "12"), "{tag}");
        let ttl: i64 = redis::cmd("TTL")
            .arg("seq")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(ttl, -2);
        let err = redis::cmd("NOPE")
            .query_async::<()>(&mut con)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("unknown command 'NOPE'"), "{err}");
        let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(pong, "PONG");
    }

    // redis-cli, as an operator would use it.
    let port = addr.port();
    let cli = |args: &[&str]| redis_cli(port, args);
    assert_eq!(cli(&["SET", "cli:k", "hello world"]), "OK\n");
    assert_eq!(cli(&["GET", "cli:k"]), "hello world\n");
    assert_eq!(cli(&["EXISTS", "cli:k", "cli:none"]), "1\n");
    assert_eq!(cli(&["EXPIRE", "cli:k", "100"]), "1\n");
    assert_eq!(cli(&["TTL", "cli:k"]), "100\n");
    assert_eq!(cli(&["-3", "GET", "cli:none"]), "\n");
    assert!(cli(&["INFO", "nodes"]).contains("nodes_up:3"));
    // 200 keys from each pipeline above and cli:k.
    assert_eq!(cli(&["DBSIZE"]), "401\n");
    assert!(cli(&["FOO", "bar"]).contains("ERR unknown command 'FOO'"));
    assert!(cli(&["GET"]).contains("ERR wrong number of arguments for 'get' command"));
    // Counters, hashes and sets through redis-cli, and the redis crate over RESP3.
    assert_eq!(cli(&["INCRBY", "cli:n", "5"]), "5\n");
    assert_eq!(cli(&["HSET", "cli:h", "f", "v", "g", "w"]), "2\n");
    assert_eq!(cli(&["HGETALL", "cli:h"]), "f\nv\ng\nw\n");
    assert_eq!(cli(&["SADD", "cli:s", "b", "a"]), "2\n");
    // A set's order is the node's, as Redis promises none.
    let mut members: Vec<String> = cli(&["SMEMBERS", "cli:s"])
        .lines()
        .map(String::from)
        .collect();
    members.sort();
    assert_eq!(members, ["a", "b"]);
    let client = redis::Client::open(format!("redis://{addr}?protocol=resp3")).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let (n, h, s): (i64, HashMap<String, String>, BTreeSet<String>) = redis::pipe()
        .cmd("DECR")
        .arg("cli:n")
        .cmd("HGETALL")
        .arg("cli:h")
        .cmd("SMEMBERS")
        .arg("cli:s")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        h,
        HashMap::from([("f".into(), "v".into()), ("g".into(), "w".into())])
    );
    assert_eq!(s, BTreeSet::from(["a".into(), "b".into()]));
    // Interactive-style input: several commands on stdin, one connection.
    let port = addr.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("redis-cli")
            .args(["-p", &port])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"SET a 1\nAPPEND a 23\nGET a\nQUORUMD CONSISTENCY all\nGET a\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\n3\n123\nOK\n123\n"
    );
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_succeeds_majority_down_fails_and_the_connection_survives() {
    let mut tc = TestCluster::start(3).await;
    let mut c = RespClient::connect(resp_addr(&tc)).await;
    assert_eq!(c.cmd("SET f:k before").await, Frame::ok());
    tc.cluster.nodes[2].kill();
    assert_eq!(c.cmd("SET f:k during").await, Frame::ok());
    assert_eq!(c.cmd("GET f:k").await, bulk("during"));
    assert_eq!(c.cmd("APPEND f:k !").await, Frame::Integer(7));
    assert_eq!(c.cmd("EXPIRE f:k 100").await, Frame::Integer(1));
    assert_eq!(c.cmd("DEL f:k").await, Frame::Integer(1));
    // A list with a node down: its reads, key commands and writes still answer as Redis.
    assert_eq!(c.cmd("RPUSH f:l a b").await, Frame::Integer(2));
    assert_eq!(c.cmd("TYPE f:l").await, Frame::Simple("list".into()));
    assert_eq!(c.cmd("EXISTS f:l").await, Frame::Integer(1));
    assert_eq!(c.cmd("EXPIRE f:l 100").await, Frame::Integer(1));
    assert_eq!(c.cmd("LPOP f:l").await, bulk("a"));
    assert_eq!(
        c.cmd("LRANGE f:l 0 -1").await,
        Frame::Array(vec![bulk("b")])
    );
    assert_eq!(c.cmd("DEL f:l").await, Frame::Integer(1));

    tc.cluster.nodes[1].kill();
    let down = format!("127.0.0.1:{}", tc.cluster.nodes[1].port());
    for line in [
        "SET f:k after",
        "GET f:k",
        "DEL f:k",
        "APPEND f:k x",
        "RPUSH f:l x",
        "LRANGE f:l 0 -1",
        "DBSIZE",
    ] {
        let reply = c.cmd(line).await;
        let text = error_text(&reply);
        assert!(text.starts_with("QUORUM "), "{line}: {text}");
        assert!(text.contains(&down), "{line} names the failed node: {text}");
        assert_eq!(
            c.cmd("PING").await,
            Frame::Simple("PONG".into()),
            "still usable"
        );
    }
    // `one` needs a single node.
    assert_eq!(c.cmd("QUORUMD CONSISTENCY one").await, Frame::ok());
    assert_eq!(c.cmd("SET f:one v").await, Frame::ok());
    assert_eq!(c.cmd("GET f:one").await, bulk("v"));
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_errors_never_a_crash() {
    let tc = TestCluster::start_with(3, |cfg| {
        cfg.resp.max_bulk_bytes = 1024;
        cfg.resp.max_request_bytes = 4096;
        cfg.resp.max_args = 100;
    })
    .await;
    let addr = resp_addr(&tc);
    let cases: &[(&[u8], &str)] = &[
        (b"*1\r\n$-5\r\n", "ERR Protocol error: invalid bulk length"),
        (
            b"*1\r\n$999999999999\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            b"*1\r\n$2048\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (b"*-7x\r\n", "ERR Protocol error: invalid multibulk length"),
        (
            b"*2000000000\r\n",
            "ERR Protocol error: invalid multibulk length",
        ),
        (b"*101\r\n", "ERR Protocol error: invalid multibulk length"),
        (b"*2\r\n:1\r\n", "ERR Protocol error: expected '$', got ':'"),
        (
            b"*1\r\n$3\r\nGETxx",
            "ERR Protocol error: bulk string not terminated by CRLF",
        ),
        (
            b"SET \"unbalanced\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ];
    for (input, expected) in cases {
        let mut c = RespClient::connect(addr).await;
        c.send_raw(input).await;
        let reply = c.read_or_closed().await.expect("an error reply");
        assert_eq!(
            error_text(&reply),
            *expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(
            c.read_or_closed().await,
            None,
            "closed after a protocol error"
        );
    }

    // A request over max_request_bytes is refused as soon as its lengths say so.
    let mut c = RespClient::connect(addr).await;
    let mut big = b"*5\r\n".to_vec();
    for _ in 0..5 {
        big.extend_from_slice(b"$1000\r\n");
        big.extend_from_slice(&[b'x'; 1000]);
        big.extend_from_slice(b"\r\n");
    }
    c.send_raw(&big).await;
    let reply = c.read_or_closed().await.expect("an error reply");
    assert!(
        error_text(&reply).contains("request larger than 4096 bytes"),
        "{reply:?}"
    );

    // Truncated frames: the client goes away mid-request; the server carries on.
    for partial in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk"[..],
        b"*2\r\n$3\r\nGE",
        b"PIN",
    ] {
        let mut c = RespClient::connect(addr).await;
        c.send_raw(partial).await;
        drop(c);
    }
    // Garbage: binary noise is either an inline command Redis would reject or a protocol
    // error; either way an error reply, never a crash.
    let mut state = 7u64;
    for round in 0..20 {
        let mut c = RespClient::connect(addr).await;
        let noise: Vec<u8> = (0..300)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect();
        c.send_raw(&noise).await;
        c.send_raw(b"\r\n").await;
        let _ = c.socket().shutdown().await;
        while let Some(f) = c.read_or_closed().await {
            assert!(matches!(f, Frame::Error(_)), "round {round}: {f:?}");
        }
    }

    // 10,000 pipelined commands in one write: every reply, in order.
    let mut c = RespClient::connect(addr).await;
    let mut batch = Vec::new();
    for i in 0..5_000 {
        batch.extend(request(&[
            b"SET",
            format!("p:{}", i % 50).as_bytes(),
            i.to_string().as_bytes(),
        ]));
        batch.extend(request(&[b"ECHO", i.to_string().as_bytes()]));
    }
    c.send_raw(&batch).await;
    for i in 0..5_000 {
        assert_eq!(c.read_or_closed().await, Some(Frame::ok()), "SET {i}");
        assert_eq!(
            c.read_or_closed().await,
            Some(bulk(&i.to_string())),
            "ECHO {i}"
        );
    }
    for k in 0..50 {
        assert_eq!(
            c.cmd(&format!("GET p:{k}")).await,
            bulk(&(4950 + k).to_string())
        );
    }
    // Inline commands, as typed into telnet.
    c.send_raw(b"SET inline \"two words\"\r\nGET inline\r\n")
        .await;
    assert_eq!(c.read_or_closed().await, Some(Frame::ok()));
    assert_eq!(c.read_or_closed().await, Some(bulk("two words")));

    // The listener still serves new clients.
    let mut after = RespClient::connect(addr).await;
    assert_eq!(after.cmd("PING").await, Frame::Simple("PONG".into()));
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_connection_limit() {
    let tc = TestCluster::start_with(3, |cfg| {
        cfg.resp.password = Some(quorumd::config::Secret("s3cret".into()));
        cfg.resp.max_connections = 2;
    })
    .await;
    let addr = resp_addr(&tc);
    let mut c = RespClient::connect(addr).await;
    assert_eq!(
        error_text(&c.cmd("GET k").await),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        error_text(&c.cmd("PING").await),
        "NOAUTH Authentication required."
    );
    assert!(error_text(&c.cmd("HELLO 3").await).starts_with("NOAUTH HELLO must be called"));
    assert_eq!(
        error_text(&c.cmd("AUTH wrong").await),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(c.cmd("AUTH s3cret").await, Frame::ok());
    assert_eq!(c.cmd("SET k v").await, Frame::ok());

    let mut d = RespClient::connect(addr).await;
    let hello = d.cmd("HELLO 3 AUTH default s3cret SETNAME cli2").await;
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(d.cmd("GET k").await, bulk("v"));
    assert_eq!(d.cmd("CLIENT GETNAME").await, bulk("cli2"));

    // A third connection is over the limit of two.
    let mut e = RespClient::connect(addr).await;
    assert_eq!(
        e.read_or_closed().await.map(|f| error_text(&f).to_string()),
        Some("ERR max number of clients reached".into())
    );
    assert_eq!(e.read_or_closed().await, None);
    drop(d);
    wait_until(Duration::from_secs(5), "a slot frees up", || async {
        let mut f = RespClient::connect(addr).await;
        f.cmd("AUTH s3cret").await == Frame::ok()
    })
    .await;
    // The password never shows in INFO or in the configuration printout.
    let Frame::Bulk(info) = c.cmd("INFO").await else {
        panic!("INFO")
    };
    assert!(!String::from_utf8_lossy(&info).contains("s3cret"));
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_commands_then_stops_listening() {
    let mut tc = TestCluster::start(3).await;
    let addr = resp_addr(&tc);
    let mut idle = RespClient::connect(addr).await;
    assert_eq!(idle.cmd("PING").await, Frame::Simple("PONG".into()));
    let mut busy = RespClient::connect(addr).await;
    // Two paused nodes make the write wait for its node timeout: it is surely in flight.
    tc.cluster.nodes[1].pause();
    tc.cluster.nodes[2].pause();
    busy.send_raw(&request(&[b"SET", b"late", b"v"])).await;
    let started = std::time::Instant::now();
    loop {
        // The INFO itself is in flight too.
        let info = idle.cmd("INFO clients").await;
        if matches!(&info, Frame::Bulk(b) if String::from_utf8_lossy(b).contains("commands_in_flight:2"))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the SET never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shutdown = tokio::spawn(tc_shutdown(tc));
    let reply = busy
        .read_or_closed()
        .await
        .expect("the in-flight command is answered");
    assert!(error_text(&reply).starts_with("QUORUM"), "{reply:?}");
    assert_eq!(
        busy.read_or_closed().await,
        None,
        "then the connection closes"
    );
    assert_eq!(idle.read_or_closed().await, None, "idle connections close");
    shutdown.await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

/// Runs redis-cli against the listener; blocking, so off the async workers.
fn redis_cli(port: u16, args: &[&str]) -> String {
    tokio::task::block_in_place(|| {
        let out = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    })
}

async fn tc_shutdown(tc: TestCluster) {
    tc.shutdown().await;
}

/// SIGHUP to this process: every service started by this test binary reloads its tokens.
fn sighup() {
    // SAFETY: kill(2) on our own pid with a signal the service handles.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0, "kill(SIGHUP)");
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

const NOAUTH: &str = "NOAUTH Authentication required.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tokens_authenticate_resp_with_scopes_and_rotate_on_sighup() {
    use quorumd::auth::{Scope, TokenEntry};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.toml");
    let write_file = |token: &str| {
        let body = format!("[[tokens]]\nname = \"ops\"\ntoken = \"{token}\"\nscope = \"write\"\n");
        std::fs::write(&file, body).unwrap();
    };
    let (old, new) = ("old-resp-token-0123456789", "new-resp-token-0123456789");
    let reader = "reader-resp-token-0123456789";
    write_file(old);
    let path = file.to_string_lossy().to_string();
    let tc = TestCluster::start_with(3, move |cfg| {
        cfg.auth.enabled = true;
        cfg.auth.tokens.push(TokenEntry {
            name: "reader".into(),
            token: reader.into(),
            scope: Scope::Read,
        });
        cfg.auth.tokens_file = path;
        cfg.resp.password = Some(quorumd::config::Secret("s3cret".into()));
    })
    .await;
    let addr = resp_addr(&tc);

    let mut w = RespClient::connect(addr).await;
    for line in ["PING", "GET k", "INCR n", "QUORUMD CONSISTENCY"] {
        assert_eq!(error_text(&w.cmd(line).await), NOAUTH, "{line}");
    }
    assert_eq!(error_text(&w.cmd("AUTH nope").await), WRONGPASS);
    let wrong_user = format!("AUTH someone {old}");
    assert_eq!(error_text(&w.cmd(&wrong_user).await), WRONGPASS);
    assert_eq!(error_text(&w.cmd("GET k").await), NOAUTH);
    assert_eq!(w.cmd(&format!("AUTH ops {old}")).await, Frame::ok());
    // At `all`, so that the read at `one` below finds it on whichever node it asks.
    assert_eq!(w.cmd("QUORUMD CONSISTENCY all").await, Frame::ok());
    assert_eq!(w.cmd("SET k v").await, Frame::ok());
    assert_eq!(w.cmd("INCR n").await, Frame::Integer(1));

    // A read-scoped token runs reads only.
    let mut r = RespClient::connect(addr).await;
    let hello = r.cmd(&format!("HELLO 3 AUTH default {reader}")).await;
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(r.cmd("GET k").await, bulk("v"));
    assert_eq!(r.cmd("GET n").await, bulk("1"));
    assert_eq!(r.cmd("SMEMBERS s").await, Frame::Set(vec![]));
    for (line, name) in [
        ("SET k w", "set"),
        ("INCR n", "incr"),
        ("HSET h f v", "hset"),
        ("SADD s m", "sadd"),
        ("DEL k", "del"),
    ] {
        assert_eq!(
            error_text(&r.cmd(line).await),
            format!("NOPERM this user has no permissions to run the '{name}' command"),
        );
    }
    assert_eq!(r.cmd("QUORUMD CONSISTENCY one").await, Frame::ok());
    assert_eq!(r.cmd("GET k").await, bulk("v"), "nothing was written");

    // resp.password still works, with every right.
    let mut p = RespClient::connect(addr).await;
    assert_eq!(p.cmd("AUTH default s3cret").await, Frame::ok());
    assert_eq!(p.cmd("INCR n").await, Frame::Integer(2));

    // Rotation: the file now holds only the new token.
    write_file(new);
    sighup();
    wait_until(Duration::from_secs(10), "new token accepted", || async {
        let mut c = RespClient::connect(addr).await;
        c.cmd(&format!("AUTH {new}")).await == Frame::ok()
    })
    .await;
    assert_eq!(
        error_text(&w.cmd("GET k").await),
        NOAUTH,
        "old token logged out"
    );
    let mut again = RespClient::connect(addr).await;
    assert_eq!(
        error_text(&again.cmd(&format!("AUTH {old}")).await),
        WRONGPASS
    );
    assert_eq!(r.cmd("GET k").await, bulk("v"), "inline token kept");
    assert_eq!(p.cmd("GET n").await, bulk("2"), "password session kept");
    tc.shutdown().await;
}

/// Error replies from the nodes reach the client by kind: WRONGTYPE on every node is Redis's
/// WRONGTYPE; OOM and READONLY refusals that cost the quorum are a QUORUM error naming each
/// refusing node and what it said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_error_replies_reach_the_client_by_kind() {
    let tc = TestCluster::start(3).await;
    let mut c = RespClient::connect(resp_addr(&tc)).await;
    for i in 0..3 {
        let mut node = tc.direct(i).await;
        let _: () = redis::cmd("RPUSH")
            .arg("e:list")
            .arg("x")
            .query_async(&mut node)
            .await
            .unwrap();
    }
    assert_eq!(
        c.cmd("GET e:list").await,
        Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    // MGET reads a key holding another type as nil, as Redis does.
    assert_eq!(c.cmd("MGET e:list").await, Frame::Array(vec![Frame::Null]));

    let mut c1 = tc.direct(1).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut c1)
        .await
        .unwrap();
    assert_eq!(
        c.cmd("SET e:k v").await,
        Frame::ok(),
        "one refusing node leaves a majority"
    );
    let mut c2 = tc.direct(2).await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(tc.cluster.nodes[0].port())
        .query_async(&mut c2)
        .await
        .unwrap();
    let reply = c.cmd("SET e:k2 v").await;
    let text = error_text(&reply);
    assert!(text.starts_with("QUORUM "), "{text}");
    let [oom_node, replica] = [1, 2].map(|i| format!("127.0.0.1:{}", tc.cluster.nodes[i].port()));
    let said_by = |node: &str| {
        let at = text
            .find(node)
            .unwrap_or_else(|| panic!("{node} named: {text}"));
        text[at..].split(", ").next().unwrap().to_ascii_uppercase()
    };
    assert!(said_by(&oom_node).contains("OOM"), "{text}");
    assert!(said_by(&replica).contains("READONLY"), "{text}");

    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut c2)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut c1)
        .await
        .unwrap();
    assert_eq!(c.cmd("SET e:k3 v").await, Frame::ok());
    tc.shutdown().await;
}

/// Before AUTH, Redis checks that the command exists and its arity first: an unknown command
/// or a wrong arity is answered as such, and only a well-formed command gets NOAUTH (the
/// transaction commands too; EXEC's refusal discards, as `EXECABORT`). Compared with a
/// redis-server 7.0 that has `requirepass`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_auth_arity_and_unknown_commands_are_answered_as_redis() {
    let tc = TestCluster::start_with(3, |cfg| {
        cfg.resp.password = Some(quorumd::config::Secret("s3cret".into()));
    })
    .await;
    let reference = start_reference().await;
    let mut admin = RespClient::connect(reference.nodes[0].addr()).await;
    assert_eq!(
        admin.cmd("CONFIG SET requirepass s3cret").await,
        Frame::ok()
    );
    let mut ours = RespClient::connect(resp_addr(&tc)).await;
    let mut theirs = RespClient::connect(reference.nodes[0].addr()).await;
    answers_as_reference(
        &mut ours,
        &mut theirs,
        &[
            "GET",
            "GET a b",
            "NOSUCH a b",
            "SET k",
            "GET k",
            "MULTI",
            "MULTI x",
            "EXEC",
            "EXEC x",
            "DISCARD",
            "WATCH",
            "WATCH k",
            "UNWATCH",
            "CLIENT REPLY OFF",
            "COMMAND GETKEYS get k",
            "PING",
            "AUTH s3cret",
            "GET",
            "MULTI",
            "GET",
            "EXEC",
        ],
    )
    .await;
    tc.shutdown().await;
}

/// Inline commands (a line typed into telnet) are split as Redis's `sdssplitargs` splits
/// them: quotes may open inside a word, a form feed separates words but does not end one,
/// and a closing quote followed by anything but a blank is Redis's protocol error, after
/// which both close the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_are_split_as_redis() {
    let (tc, _reference, mut ours, mut theirs) = beside_a_reference().await;
    writes_as_reference(
        &mut ours,
        &mut theirs,
        &[
            b"ECHO a\"b\"\r\n",
            b"ECHO a\"b c\"\r\n",
            b"ECHO a\x0cb\r\n",
            b"ECHO \x0c\x0b a\r\n",
            b"\x0bECHO\x0ba\r\n",
            b"ECHO 'it\\'s' \"\\x41\\q\"\r\n",
            b"SET inline:k \"a\\tb\\x00c\"\r\nGET inline:k\r\n",
            b"ECHO \"a\"\x0cb\r\n",
            b"ECHO \"a\"b\r\nPING\r\n",
            b"ECHO 'a\r\n",
        ],
    )
    .await;
    tc.shutdown().await;
}
