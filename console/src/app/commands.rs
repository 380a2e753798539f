//! The `:` commands: what each does, completion of a typed name, and running a line.

use chrono::{DateTime, Utc};
use trustdeck_topology::fleet::Level;

use super::model::App;
use super::msg::Effect;
use super::screen::{Mode, View};

/// What a `:` command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Switch to a view.
    View(View),
    Help,
    /// Toggle mouse capture.
    Mouse,
    /// Write the fleet state to a file (`overwrite`: `:dump!`).
    Dump {
        overwrite: bool,
    },
    /// The runbook list.
    Runbooks,
    /// The runbook pane again.
    Runbook,
    /// Leave read-only mode (asks), or go back to it.
    Operator,
    /// Resume the runbook in progress (the banner's).
    Resume,
    /// Abort the runbook in progress (asks).
    Abort,
    Quit,
}

/// One `:` command.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Its names; the first is the one shown first.
    pub names: &'static [&'static str],
    pub cmd: Cmd,
    pub help: &'static str,
}

/// Every `:` command.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        names: &["tree", "t"],
        cmd: Cmd::View(View::Tree),
        help: "the merged tree",
    },
    CommandSpec {
        names: &["expiring", "exp", "x"],
        cmd: Cmd::View(View::Expiring),
        help: "what expires next, fleet-wide",
    },
    CommandSpec {
        names: &["segments", "seg", "windows"],
        cmd: Cmd::View(View::Segments),
        help: "autonomous window per segment",
    },
    CommandSpec {
        names: &["events", "ev"],
        cmd: Cmd::View(View::Events),
        help: "fleet events, newest first",
    },
    CommandSpec {
        names: &["daemons", "dm"],
        cmd: Cmd::View(View::Daemons),
        help: "the console's connection to each daemon",
    },
    CommandSpec {
        names: &["timeline", "tl"],
        cmd: Cmd::View(View::Timeline),
        help: "health per segment and daemon over the last hour",
    },
    CommandSpec {
        names: &["federation", "fed"],
        cmd: Cmd::View(View::Federation),
        help: "foreign trust domains: freshness, failures, root expiry; peers' receipts",
    },
    CommandSpec {
        names: &["help"],
        cmd: Cmd::Help,
        help: "this help",
    },
    CommandSpec {
        names: &["mouse"],
        cmd: Cmd::Mouse,
        help: "mouse capture on/off (wheel, click)",
    },
    CommandSpec {
        names: &["dump"],
        cmd: Cmd::Dump { overwrite: false },
        help: "FILE: write the fleet state (status JSON and events) to a new FILE (~/ is $HOME)",
    },
    CommandSpec {
        names: &["dump!"],
        cmd: Cmd::Dump { overwrite: true },
        help: "FILE: the same, replacing FILE if it exists",
    },
    CommandSpec {
        names: &["runbooks", "rb"],
        cmd: Cmd::Runbooks,
        help: "the runbooks (R on a node: those that apply to it)",
    },
    CommandSpec {
        names: &["runbook"],
        cmd: Cmd::Runbook,
        help: "the runbook pane again",
    },
    CommandSpec {
        names: &["operator"],
        cmd: Cmd::Operator,
        help: "operator mode on (asks) or off: runbooks can act",
    },
    CommandSpec {
        names: &["resume"],
        cmd: Cmd::Resume,
        help: "resume the runbook in progress (operator mode)",
    },
    CommandSpec {
        names: &["abort"],
        cmd: Cmd::Abort,
        help: "abort the runbook in progress (asks for its target)",
    },
    CommandSpec {
        names: &["q", "quit"],
        cmd: Cmd::Quit,
        help: "quit",
    },
];

impl App {
    /// Completes the typed command name to the longest prefix all matching names share.
    pub(super) fn complete_command(&mut self) {
        let typed = self.command.trim().to_lowercase();
        let matches: Vec<&str> = COMMANDS
            .iter()
            .flat_map(|c| c.names.iter().copied())
            .filter(|n| n.starts_with(&typed))
            .collect();
        let Some(first) = matches.first() else {
            return;
        };
        let mut common = first.to_string();
        for m in &matches[1..] {
            while !m.starts_with(&common) {
                common.pop();
            }
        }
        if common.len() >= typed.len() {
            self.command = common;
        }
    }

    /// The commands whose names start with what is typed (for the command line's hint).
    pub fn command_matches(&self) -> Vec<&'static CommandSpec> {
        let typed = self.command.trim().to_lowercase();
        COMMANDS
            .iter()
            .filter(|c| c.names.iter().any(|n| n.starts_with(&typed)))
            .collect()
    }

    /// Runs a typed command line; an unknown name says which commands exist.
    pub(super) fn run_command(&mut self, line: &str, now: DateTime<Utc>, fx: &mut Vec<Effect>) {
        let line = line.trim().trim_start_matches(':');
        let (word, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let (word, arg) = (word.to_lowercase(), arg.trim());
        if word.is_empty() {
            return;
        }
        let Some(spec) = COMMANDS.iter().find(|c| c.names.contains(&word.as_str())) else {
            let known: Vec<String> = COMMANDS
                .iter()
                .filter(|c| matches!(c.cmd, Cmd::View(_)))
                .map(|c| format!(":{}", c.names[0]))
                .collect();
            self.flash(
                Level::Critical,
                format!("unknown command \":{word}\": try {} :q", known.join(" ")),
            );
            return;
        };
        match spec.cmd {
            Cmd::View(v) => {
                self.view = v;
                self.clamp(v);
            }
            Cmd::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
            }
            Cmd::Mouse => {
                self.mouse = !self.mouse;
                self.flash(
                    Level::Ok,
                    if self.mouse {
                        "mouse on: wheel scrolls, click selects (shift+drag to copy text)"
                    } else {
                        "mouse off"
                    },
                );
            }
            Cmd::Dump { overwrite } => {
                if arg.is_empty() {
                    self.flash(
                        Level::Critical,
                        format!(":{word} needs a file name: :{word} FILE"),
                    );
                } else {
                    fx.push(Effect::Dump {
                        path: arg.into(),
                        contents: crate::dump::contents(&self.fleet, now, &self.thresholds),
                        overwrite,
                    });
                }
            }
            Cmd::Runbooks => self.open_runbooks(),
            Cmd::Runbook => self.show_runbook(),
            Cmd::Operator => self.toggle_operator(),
            Cmd::Resume => self.resume_runbook(now, fx),
            Cmd::Abort => self.ask_abort(),
            Cmd::Quit => fx.push(Effect::Quit),
        }
        self.refresh(now);
    }
}
