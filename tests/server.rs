//! End-to-end tests against a real `redis-server` with the built module
//! (target/release/libredis_session.so, or $SESSION_MODULE). Each test starts
//! its own servers on free loopback ports and stops them on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn module_path() -> String {
    std::env::var("SESSION_MODULE").unwrap_or_else(|_| {
        format!(
            "{}/target/release/libredis_session.so",
            env!("CARGO_MANIFEST_DIR")
        )
    })
}

/// The server binary: $REDIS_SERVER (as the Python harness), else `redis-server` on PATH.
fn server_binary() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("rs-test-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--enable-debug-command".into(),
            "yes".into(),
            "--loadmodule".into(),
            module_path(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(server_binary())
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (make test installs it)");
        let server = Server {
            child,
            port,
            _dir: TempDir(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = server.try_conn() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return server;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not start");
    }

    fn try_conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }

    fn conn(&self) -> redis::Connection {
        self.try_conn().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const KEY: &str = "sess:acme:AAAAAAAAAAAAAAAAAAAAAA";

fn get_map(c: &mut redis::Connection, args: &[&str]) -> Option<Vec<redis::Value>> {
    let v: redis::Value = redis::cmd("SESSION.GET").arg(args).query(c).unwrap();
    match v {
        redis::Value::Nil => None,
        redis::Value::Array(items) => Some(items),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn field(items: &[redis::Value], name: &str) -> redis::Value {
    for pair in items.chunks(2) {
        if let [k, v] = pair {
            let kname: String = redis::from_redis_value(k).unwrap();
            if kname == name {
                return v.clone();
            }
        }
    }
    panic!("no field {name}");
}

#[test]
fn lifecycle_of_a_session() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let v: i64 = redis::cmd("SESSION.CREATE")
        .arg(&[
            KEY, "SUBJECT", "u1", "META", "1", "ip", "10.0.0.1", "DATA", "a", "1", "b", "2",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 1);
    let items = get_map(&mut c, &[KEY, "TOUCH"]).unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(
        redis::from_redis_value::<String>(&field(&items, "state")).unwrap(),
        "active"
    );
    let v: i64 = redis::cmd("SESSION.SET")
        .arg(&[KEY, "IFVERSION", "1", "DATA", "c", "3"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 2);
    let err = redis::cmd("SESSION.SET")
        .arg(&[KEY, "IFVERSION", "1", "DATA", "c", "4"])
        .query::<i64>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("CONFLICT"));
    let v: i64 = redis::cmd("SESSION.CAS")
        .arg(&[KEY, "2", "DATA", "z", "9"])
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 3);
    let items = get_map(&mut c, &[KEY, "FIELDS", "2", "z", "a"]).unwrap();
    let data: Vec<redis::Value> = match field(&items, "data") {
        redis::Value::Array(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(data.len(), 2);
    let n: i64 = redis::cmd("SESSION.REVOKE")
        .arg(&[KEY, "REASON", "logout"])
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let err = redis::cmd("SESSION.GET")
        .arg(KEY)
        .query::<redis::Value>(&mut c)
        .unwrap_err();
    assert_eq!(err.code(), Some("REVOKED"));
    assert_eq!(err.detail(), Some("logout"));
}

#[test]
fn replica_and_aof_rewrite_hold_the_primary_digest() {
    let primary = Server::start(&["touch-resolution", "0"]);
    let replica = Server::start(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let mut p = primary.conn();
    for i in 0..50 {
        let key = format!("sess:t{}:{:0>20}", i % 3, i);
        let _: i64 = redis::cmd("SESSION.CREATE")
            .arg(&[&key, "SUBJECT", "u", "DATA", "f", "v"])
            .query(&mut p)
            .unwrap();
        let _: redis::Value = redis::cmd("SESSION.GET")
            .arg(&[&key, "TOUCH"])
            .query(&mut p)
            .unwrap();
        if i % 2 == 0 {
            let _: i64 = redis::cmd("SESSION.SET")
                .arg(&[&key, "DATA", "g", "w"])
                .query(&mut p)
                .unwrap();
        }
        if i % 5 == 0 {
            let _: i64 = redis::cmd("SESSION.RENEW")
                .arg(&[&key, "IDLE", "99999"])
                .query(&mut p)
                .unwrap();
        }
        if i % 7 == 0 {
            let _: i64 = redis::cmd("SESSION.REVOKE").arg(&key).query(&mut p).unwrap();
        }
    }
    let _: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut p).unwrap();
    let mut r = replica.conn();
    let want: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut p).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut r).unwrap();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica digest {got} != primary {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Rewrite the AOF without an RDB preamble (so the type's aof_rewrite runs) and reload it.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "aof-use-rdb-preamble", "no"])
        .query(&mut p)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "appendonly", "yes"])
        .query(&mut p)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut p).unwrap();
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_enabled:1") {
            break;
        }
        assert!(Instant::now() < deadline, "AOF rewrite did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _: () = redis::cmd("DEBUG").arg("LOADAOF").query(&mut p).unwrap();
    let after: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut p).unwrap();
    assert_eq!(after, want);
}
