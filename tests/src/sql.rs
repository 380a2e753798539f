//! Reaching a test server's database behind its back, as an intruder or a forensic look would.

use super::*;

/// Where a test server keeps its state.
pub enum TestDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TestDb {
    /// Runs `sql` (with `sqlite3` or `psql`) and returns what it printed, `|`-separated.
    pub fn query(&self, sql: &str) -> String {
        let out = match self {
            TestDb::Sqlite(path) => Command::new("sqlite3").arg(path).arg(sql).output(),
            TestDb::Postgres(url) => Command::new("psql")
                .args([url.as_str(), "-tAc", sql])
                .output(),
        }
        .expect("query tool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
