//! A throwaway PostgreSQL database per test.

use super::*;

/// A fresh PostgreSQL database on the test cluster (`TRUSTDECK_TEST_POSTGRES_URL`), dropped
/// when this guard is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Connection URL of the new database.
    pub url: String,
}

impl PgDatabase {
    /// Creates one, or returns `None` (after saying so) when no cluster is configured; panics
    /// when `TRUSTDECK_REQUIRE_POSTGRES` is set but the cluster is not.
    pub fn create(prefix: &str) -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("TRUSTDECK_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("TRUSTDECK_REQUIRE_POSTGRES").is_err(),
                "TRUSTDECK_REQUIRE_POSTGRES is set but TRUSTDECK_TEST_POSTGRES_URL is not"
            );
            eprintln!("SKIP: TRUSTDECK_TEST_POSTGRES_URL not set");
            return None;
        };
        let mut rnd = [0u8; 6];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd).expect("rng");
        let name = format!("td_{prefix}_{}", hex_lower(&rnd));
        TestDb::Postgres(admin_url.clone()).query(&format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", admin_url.rsplit_once('/').expect("url").0);
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// The server config line that uses this database.
    pub fn config_line(&self) -> String {
        format!("datastore = \"{}\"\n", self.url)
    }
}

impl PgDatabase {
    /// Makes the database unreachable for its users, as a stopped PostgreSQL would be, without
    /// touching the other tests' databases: refuses new connections and ends the open ones.
    pub fn drop_connections_and_block(&self) {
        for sql in [
            format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", self.name),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ),
        ] {
            TestDb::Postgres(self.admin_url.clone()).query(&sql);
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin_url,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}
