//! Users and groups as `/etc/passwd` and `/etc/group` list them (accounts only a name
//! service such as LDAP knows are not seen): which group a name is, which groups a uid has.

use std::path::Path;

/// Reading the account files failed.
#[derive(Debug, thiserror::Error)]
#[error("read {path}: {source}")]
pub struct AccountsError {
    pub path: String,
    pub source: std::io::Error,
}

/// The local accounts: users with their primary group, groups with their members.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// (name, uid, primary gid)
    users: Vec<(String, u32, u32)>,
    /// (name, gid, member names)
    groups: Vec<(String, u32, Vec<String>)>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group`.
    pub fn load() -> Result<Accounts, AccountsError> {
        let read = |p: &str| {
            std::fs::read_to_string(Path::new(p)).map_err(|source| AccountsError {
                path: p.to_string(),
                source,
            })
        };
        Ok(Self::parse(&read("/etc/passwd")?, &read("/etc/group")?))
    }

    /// Accounts from the text of a passwd and a group file; malformed lines are skipped.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                Some((
                    f.first()?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                ))
            })
            .collect();
        let groups = group
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let members = f
                    .get(3)?
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                Some((f.first()?.to_string(), f.get(2)?.parse().ok()?, members))
            })
            .collect();
        Accounts { users, groups }
    }

    /// The gid of the group called `name`.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }

    /// The groups of `uid`: its primary group and those listing it as a member.
    pub fn groups_of(&self, uid: u32) -> Vec<u32> {
        let Some((name, _, primary)) = self.users.iter().find(|u| u.1 == uid) else {
            return Vec::new();
        };
        let mut out = vec![*primary];
        out.extend(
            self.groups
                .iter()
                .filter(|g| g.2.iter().any(|m| m == name))
                .map(|g| g.1),
        );
        out
    }
}
