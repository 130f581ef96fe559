//! A real `redis-server` per test on a free loopback port, without persistence, optionally
//! with a password (put in a temp config file, not on the command line). Killed on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require_program, wait_until};

pub struct Redis {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::launch(None)
    }

    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch(Some(password))
    }

    fn launch(password: Option<&str>) -> Redis {
        let program = require_program("redis-server");
        let dir = tempfile::tempdir().expect("temp dir for redis");
        let port = free_port();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndaemonize no\ndir {}\nlogfile {}\n",
            dir.path().display(),
            dir.path().join("redis.log").display()
        );
        if let Some(pw) = password {
            conf.push_str(&format!("requirepass \"{pw}\"\n"));
        }
        let conf_path: PathBuf = dir.path().join("redis.conf");
        std::fs::write(&conf_path, conf).expect("writing redis.conf");
        let child = Command::new(program)
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server");
        let mut redis = Redis { child, port, dir };
        let up = wait_until(Duration::from_secs(10), || redis.answers());
        if !up {
            let log =
                std::fs::read_to_string(redis.dir.path().join("redis.log")).unwrap_or_default();
            let exited = redis.child.try_wait().ok().flatten();
            panic!("redis-server on port {port} did not come up (exit: {exited:?}); log:\n{log}");
        }
        redis
    }

    /// Anything that answers a PING (even `-NOAUTH`) is up.
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).map(|n| n > 0).unwrap_or(false)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
