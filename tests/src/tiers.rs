//! Three tiers of servers (root → mid → leaf) with a workload agent under each, and an entry
//! for this test process on each agent: the topology of the issue-13 "Prove it" suites.

use super::*;

/// Lifetimes of the tiers; the defaults make every tier's CA rotate within ~20 s.
#[derive(Debug, Clone)]
pub struct TiersConfig {
    /// `ca_ttl` (and `jwt_key_ttl`) of every server.
    pub ca_ttl: String,
    /// `default_x509_svid_ttl`/`default_jwt_svid_ttl` of every server, and the workload
    /// entries' X.509 TTL.
    pub svid_ttl: String,
    pub rotation_check_interval: String,
    /// Extra top-level TOML for every server.
    pub extra: String,
}

impl Default for TiersConfig {
    fn default() -> Self {
        Self {
            ca_ttl: "15s".into(),
            svid_ttl: "4s".into(),
            rotation_check_interval: "200ms".into(),
            extra: String::new(),
        }
    }
}

impl TiersConfig {
    fn server_toml(&self) -> String {
        format!(
            "ca_ttl = \"{ca}\"\ndefault_x509_svid_ttl = \"{svid}\"\ndefault_jwt_svid_ttl = \"{svid}\"\nrotation_check_interval = \"{check}\"\n{extra}\n",
            ca = self.ca_ttl,
            svid = self.svid_ttl,
            check = self.rotation_check_interval,
            extra = self.extra,
        )
    }
}

/// A workload agent under one tier and the SPIFFE ID of this process's entry on it.
pub struct TierAgent {
    pub agent: AgentProc,
    /// The agent's own SPIFFE ID (the entry's parent).
    pub agent_id: String,
    /// The workload SPIFFE ID this process gets from the agent.
    pub workload_id: String,
}

/// root → mid → leaf, a workload agent under each; everything is stopped on drop (agents
/// first, then the leaf, the mid and the root).
pub struct Tiers {
    // Field order is drop order: workloads, then servers from the bottom up.
    pub leaf_agent: TierAgent,
    pub mid_agent: TierAgent,
    pub root_agent: TierAgent,
    pub leaf: Downstream,
    pub mid: Downstream,
    pub root: ServerProc,
    pub config: TiersConfig,
}

/// Segment names of the downstream tiers: the mid's namespace is `/<env>/tier-mid/`; the
/// leaf lies inside it (`/prod/tier-mid/tier-leaf/`), as a downstream of a downstream must.
/// Each tier's workload is `/prod/<segment>/workload`.
pub const MID_SEGMENT: &str = "tier-mid";
pub const LEAF_SEGMENT: &str = "tier-mid/tier-leaf";

impl Tiers {
    /// Starts the three tiers with [`TiersConfig::default`].
    pub fn start() -> Tiers {
        Self::start_with(TiersConfig::default())
    }

    /// Starts the three tiers and their agents, and waits until each agent serves this
    /// process its workload SVID.
    pub fn start_with(config: TiersConfig) -> Tiers {
        let toml = config.server_toml();
        let root = ServerProc::start(&toml);
        let mid = Downstream::start(&root, MID_SEGMENT, &toml);
        let leaf = Downstream::start(&mid.server, &format!("prod/{LEAF_SEGMENT}"), &toml);
        let root_agent = {
            let token = root.token("10m");
            let agent = AgentProc::start(
                &root,
                &format!("type = \"join_token\"\ntoken = \"{token}\"\n"),
                "",
            );
            tier_agent(
                &root,
                agent,
                format!("spiffe://example.org/trustdeck/agent/join_token/{token}"),
                "root",
                &config,
            )
        };
        let (agent, id) = mid.workload_agent();
        let mid_agent = tier_agent(&mid.server, agent, id, MID_SEGMENT, &config);
        let (agent, id) = leaf.workload_agent();
        let leaf_agent = tier_agent(&leaf.server, agent, id, LEAF_SEGMENT, &config);
        let t = Tiers {
            leaf_agent,
            mid_agent,
            root_agent,
            leaf,
            mid,
            root,
            config,
        };
        for a in t.agents() {
            wait_for(30, &format!("{} served", a.workload_id), || {
                let v = try_py_spiffe(&a.agent.socket, &["x509", "--timeout", "3"]).ok()?;
                v["x509"]
                    .as_array()?
                    .iter()
                    .any(|s| s["spiffe_id"] == a.workload_id.as_str())
                    .then_some(())
            });
        }
        t
    }

    /// The workload agents, root first.
    pub fn agents(&self) -> [&TierAgent; 3] {
        [&self.root_agent, &self.mid_agent, &self.leaf_agent]
    }

    /// The servers, root first.
    pub fn servers(&self) -> [&ServerProc; 3] {
        [&self.root, &self.mid.server, &self.leaf.server]
    }

    /// Starts a continuous validator on each tier's workload agent, root first.
    pub fn validators(&self, opts: &ValidatorOptions) -> Vec<Validator> {
        ["root", "mid", "leaf"]
            .iter()
            .zip(self.agents())
            .map(|(name, a)| Validator::start(&a.agent, name, opts))
            .collect()
    }

    /// Every log (servers and agents), for a failure message.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (name, srv) in ["root", "mid", "leaf"].iter().zip(self.servers()) {
            s.push_str(&format!("--- {name} server\n{}\n", srv.log()));
        }
        for (name, a) in ["root", "mid", "leaf"].iter().zip(self.agents()) {
            s.push_str(&format!("--- {name} agent\n{}\n", a.agent.log()));
        }
        s
    }
}

/// Registers this process under `agent` on `server` and wraps it.
fn tier_agent(
    server: &ServerProc,
    agent: AgentProc,
    agent_id: String,
    segment: &str,
    config: &TiersConfig,
) -> TierAgent {
    let workload_id = format!("spiffe://example.org/prod/{segment}/workload");
    entry_for_me(server, &agent_id, &workload_id, &config.svid_ttl);
    TierAgent {
        agent,
        agent_id,
        workload_id,
    }
}
