//! The interactive console in a tmux session of its own, driven by keys and read from the
//! screen (`capture-pane`). Each [`Tmux`] has its own tmux server (socket), killed on drop;
//! killing it early ([`Tmux::kill`]) is an SSH session dropping.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{DemoProc, bin, wait_for};

/// A tmux server running the console in its one session, `console`.
pub struct Tmux {
    socket: String,
    log: PathBuf,
}

impl Tmux {
    /// The console on `demo`'s fleet in a 160×48 tmux session of its own (`tag` tells the
    /// tests' servers apart).
    pub fn console(demo: &DemoProc, tag: &str) -> Self {
        Tmux::console_with(demo, tag, &[])
    }

    /// The same with extra arguments (`--operator`, `--runbooks DIR`). Its log is
    /// `DIR/console-TAG.log` in the demo's directory, printed when a test fails.
    pub fn console_with(demo: &DemoProc, tag: &str, args: &[&str]) -> Self {
        let tmux = Tmux {
            socket: format!("td-e2e-{tag}-{}", std::process::id()),
            log: demo.dir.path().join(format!("console-{tag}.log")),
        };
        // `exec`: the pane's process is the console itself (see `pid`).
        let cmd = format!(
            "NO_COLOR=1 TRUSTDECK_LOG=info,trustdeck_console=debug exec {} --fleet {} --log-file {} {}",
            bin("trustdeck").display(),
            demo.fleet_path().display(),
            tmux.log.display(),
            args.join(" ")
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "160",
            "-y",
            "48",
            &cmd,
        ]);
        tmux
    }

    /// `tmux -L SOCKET <args>`: its stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen, as text.
    pub fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }

    /// Sends keys (tmux `send-keys` names: `Enter`, `Escape`, or text), then lets the
    /// console draw.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "console", "-l", text]);
        self.keys(&["Enter"]);
    }

    /// Polls the screen until `f` holds; panics after `secs` with the screen and the log.
    pub fn wait_screen(&self, secs: u64, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.capture();
            if f(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The pid of the pane's process (the console).
    pub fn pid(&self) -> u32 {
        let p = self.run(&["display-message", "-p", "-t", "console", "#{pane_pid}"]);
        p.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pane pid: {p:?}"))
    }

    /// Kills the tmux server, as an SSH session dropping: the console gets SIGHUP. Waits
    /// until the console is gone.
    pub fn kill(&self) {
        let pid = self.pid();
        self.run(&["kill-server"]);
        wait_for(10, "the console to exit on SIGHUP", || {
            (!crate::alive(pid)).then_some(())
        });
    }

    /// The console's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- console log {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.run(&["kill-server"]);
    }
}
