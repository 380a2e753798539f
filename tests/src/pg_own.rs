//! A PostgreSQL cluster a test starts, stops and restarts itself (the shared one of
//! `scripts/pg.sh` serves other tests in parallel and must stay up).

use super::*;

/// A private PostgreSQL cluster on a free port, removed when dropped.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Runs a shell command as the `postgres` user when this is root (PostgreSQL refuses root).
fn as_postgres(cmd: &str) -> Output {
    let mut c = if my_uid() == 0 {
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", cmd]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", cmd]);
        c
    };
    c.output().expect("run a PostgreSQL tool")
}

impl OwnPostgres {
    /// Starts one, or `None` (after saying so) when PostgreSQL tests are not enabled
    /// (`TRUSTDECK_TEST_POSTGRES_URL` unset) or no PostgreSQL is installed.
    pub fn start() -> Option<OwnPostgres> {
        let required = std::env::var_os("TRUSTDECK_REQUIRE_POSTGRES").is_some();
        if std::env::var("TRUSTDECK_TEST_POSTGRES_URL").is_err() {
            assert!(
                !required,
                "TRUSTDECK_REQUIRE_POSTGRES is set but TRUSTDECK_TEST_POSTGRES_URL is not"
            );
            return None;
        }
        let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("pg_ctl").exists())
            .collect();
        bins.sort();
        let Some(bin) = bins.pop() else {
            assert!(
                !required,
                "TRUSTDECK_REQUIRE_POSTGRES is set but no PostgreSQL is installed"
            );
            eprintln!("SKIP: no PostgreSQL installed");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("td-own-pg-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        if my_uid() == 0 {
            let st = Command::new("chown")
                .args(["postgres:", &dir.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(st.success());
        }
        let port = free_port();
        let pg = OwnPostgres { dir, bin, port };
        let out = as_postgres(&format!(
            "{}/initdb -D {}/data -A trust -U postgres --no-sync -E UTF8",
            pg.bin.display(),
            pg.dir.path().display()
        ));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        Some(pg)
    }

    /// Starts the cluster (again), waiting until it accepts connections.
    pub fn up(&self) {
        let d = self.dir.path().display();
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/log -w -o \"-c listen_addresses=127.0.0.1 -p {} -k {d} \
             -c fsync=off\" start",
            self.bin.display(),
            self.port
        ));
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster at once (`-m immediate`, as a crash would), ending every connection.
    pub fn down(&self) {
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate stop",
            self.bin.display(),
            self.dir.path().display()
        ));
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server config line that uses this cluster.
    pub fn config_line(&self) -> String {
        format!(
            "datastore = \"postgres://postgres@127.0.0.1:{}/postgres\"\n",
            self.port
        )
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m immediate stop",
            self.bin.display(),
            self.dir.path().display()
        ));
    }
}
