//! The terminal: raw mode and the alternate screen (restored on exit, on every error path and
//! on panic), a thread that reads input, and the one event loop over input, the daemons'
//! messages and a one-second tick. It draws only when `update` says something changed. It is
//! the console's edge for time: it reads the clock and hands `now` to `update` and the view.
//! Nothing is printed to the screen but frames; logs go through `tracing` (to a file).

use std::io::{self, Stdout};
use std::panic;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender, error::TryRecvError};
use trustdeck_process::clock::Clock;

use crate::app::{App, Effect, Msg, update_many};
use crate::runbook::io::RunbookIo;
use crate::termcaps::{Colors, SgrWriter};
use crate::view;

#[path = "term_runbook.rs"]
mod runbook_edge;

/// Most messages handled between two frames (a burst of deltas is applied, then drawn once).
const BATCH: usize = 4096;

/// Puts the terminal back as it was. Safe to call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Restores the terminal when dropped (normal return, `?` error paths, unwinding panics), and
/// puts the previous panic hook back.
struct Guard {
    prev_hook: Option<Hook>,
}

/// A panic hook that can be shared.
type Hook = Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync + 'static>;

impl Guard {
    fn install() -> anyhow::Result<Self> {
        let prev: Hook = Arc::from(panic::take_hook());
        let hook_prev = prev.clone();
        panic::set_hook(Box::new(move |info| {
            // Restore first so the panic message is readable on the normal screen.
            restore();
            hook_prev(info);
        }));
        let guard = Guard {
            prev_hook: Some(prev),
        };
        enable_raw_mode().context("entering raw mode")?;
        execute!(io::stdout(), EnterAlternateScreen).context("entering the alternate screen")?;
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
        if let Some(prev) = self.prev_hook.take() {
            // Drop ours (it may still be in place), then chain to the previous one again.
            let _ = panic::take_hook();
            panic::set_hook(Box::new(move |info| prev(info)));
        }
    }
}

/// Reads terminal input on its own thread (crossterm's reads block) and forwards it.
struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InputThread {
    fn spawn(tx: UnboundedSender<io::Result<Msg>>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("console-input".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match event::poll(Duration::from_millis(100)) {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                    let msg = match event::read() {
                        Ok(Event::Key(k)) => Msg::Key(k),
                        Ok(Event::Mouse(m)) => Msg::Mouse(m),
                        Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                        Ok(_) => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    if tx.send(Ok(msg)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            // It notices within one poll interval (100 ms).
            let _ = h.join();
        }
    }
}

fn set_mouse(on: bool) -> io::Result<()> {
    if on {
        execute!(io::stdout(), EnableMouseCapture)
    } else {
        execute!(io::stdout(), DisableMouseCapture)
    }
}

/// Runs the console until the user quits. `data` carries the daemons' stream messages,
/// connection changes and detail answers (from the client); effects other than quitting and
/// drawing are sent to `effects` for the client to carry out. `colors` says whether and how
/// colour is written (none for NO_COLOR, basic SGR codes on a limited terminal). Call it from
/// a tokio runtime. Runbook effects are performed here with `runbooks` (the admin endpoints
/// and the journal), their answers coming back as messages.
pub async fn run(
    mut app: App,
    mut data: UnboundedReceiver<Msg>,
    effects: UnboundedSender<Effect>,
    colors: Colors,
    clock: Arc<dyn Clock>,
    runbooks: Option<RunbookIo>,
) -> anyhow::Result<()> {
    let guard = Guard::install()?;
    let (rb_tx, mut rb_rx) = mpsc::unbounded_channel();
    let io = Io {
        data: &mut data,
        effects: &effects,
        colors,
        clock: clock.as_ref(),
        runbooks: runbooks.as_ref(),
        rb_tx: &rb_tx,
        rb_rx: &mut rb_rx,
    };
    let result = event_loop(&mut app, io).await;
    drop(guard);
    if let Err(e) = &result {
        tracing::error!(error = %e, "console stopped");
    }
    result
}

/// What the loop reads and writes besides the terminal.
struct Io<'a> {
    data: &'a mut UnboundedReceiver<Msg>,
    effects: &'a UnboundedSender<Effect>,
    colors: Colors,
    clock: &'a dyn Clock,
    runbooks: Option<&'a RunbookIo>,
    /// Where runbook answers come back.
    rb_tx: &'a UnboundedSender<Msg>,
    rb_rx: &'a mut UnboundedReceiver<Msg>,
}

type Term = Terminal<CrosstermBackend<SgrWriter<Stdout>>>;

async fn event_loop(app: &mut App, mut io: Io<'_>) -> anyhow::Result<()> {
    let out = SgrWriter::new(io::stdout(), io.colors == Colors::Basic);
    let mut terminal: Term =
        Terminal::new(CrosstermBackend::new(out)).context("opening the terminal")?;
    terminal.clear().context("clearing the terminal")?;
    let mut mouse_on = app.mouse;
    if mouse_on {
        set_mouse(true).context("enabling mouse capture")?;
    }
    let (in_tx, mut input) = mpsc::unbounded_channel();
    let _input = InputThread::spawn(in_tx).context("starting the input thread")?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    let size = terminal.size().context("reading the terminal size")?;
    let mut batch = vec![Msg::Resize(size.width, size.height)];
    let mut data_open = true;
    loop {
        if !apply(app, &mut terminal, batch.drain(..), &io)? {
            return Ok(());
        }
        if app.mouse != mouse_on {
            set_mouse(app.mouse).context("switching mouse capture")?;
            mouse_on = app.mouse;
        }
        tokio::select! {
            m = io.data.recv(), if data_open => match m {
                Some(m) => batch.push(m),
                None => {
                    data_open = false;
                    tracing::warn!("data channel closed; showing the last-known state");
                }
            },
            m = input.recv() => match m {
                Some(Ok(m)) => batch.push(m),
                Some(Err(e)) => return Err(e).context("reading terminal input"),
                None => anyhow::bail!("the input thread stopped"),
            },
            m = io.rb_rx.recv() => if let Some(m) = m {
                batch.push(m);
            },
            _ = tick.tick() => batch.push(Msg::Tick),
        }
        drain(&mut batch, &mut input, &mut io, &mut data_open)?;
    }
}

/// Applies a batch, hands effects to the client and draws when something changed; false when
/// the user quits.
fn apply(
    app: &mut App,
    terminal: &mut Term,
    batch: impl IntoIterator<Item = Msg>,
    io: &Io<'_>,
) -> anyhow::Result<bool> {
    let fx = update_many(app, batch, io.clock.now());
    let mut redraw = false;
    let mut answers = Vec::new();
    for e in fx {
        match e {
            Effect::Quit => return Ok(false),
            Effect::Redraw => redraw = true,
            Effect::Copy { what, text } => copy(&what, &text),
            Effect::Dump {
                path,
                contents,
                overwrite,
            } => answers.push(Msg::Dumped(dump(&path, &contents, overwrite))),
            Effect::Runbook(e) => runbook_edge::spawn(io.runbooks, e, io.rb_tx),
            other => {
                if io.effects.send(other).is_err() {
                    tracing::debug!("effects receiver gone");
                }
            }
        }
    }
    if !answers.is_empty() {
        // Only a redraw comes back from these answers.
        redraw |= !update_many(app, answers, io.clock.now()).is_empty();
    }
    if redraw {
        let now = io.clock.now();
        terminal
            .draw(|f| view::render(app, f, now, io.colors != Colors::None))
            .context("drawing")?;
    }
    Ok(true)
}

/// Writes the OSC 52 sequence that puts `text` into the clipboard (wrapped for tmux when
/// `$TMUX` is set). The terminal does not answer: a failure is only logged.
fn copy(what: &str, text: &str) {
    use std::io::Write as _;
    let tmux = std::env::var_os("TMUX").is_some();
    match crate::clipboard::osc52(text, tmux) {
        Ok(seq) => {
            let mut out = io::stdout();
            if let Err(e) = out.write_all(seq.as_bytes()).and_then(|()| out.flush()) {
                tracing::warn!(what, error = %e, "could not write the OSC 52 sequence");
            }
        }
        Err(e) => tracing::warn!(what, error = %e, "not copied"),
    }
}

/// Writes a `:dump` file, relative to the working directory (`~/` is `$HOME`).
fn dump(
    path: &std::path::Path,
    contents: &str,
    overwrite: bool,
) -> Result<(std::path::PathBuf, u64), String> {
    let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    crate::dump::resolve(&cwd, home.as_deref(), path)
        .and_then(|p| crate::dump::write(&p, contents, overwrite))
        .map_err(|e| e.to_string())
}

/// Takes whatever else is queued, so a burst is applied once and drawn once. Input first:
/// keys stay responsive under a flood of deltas.
fn drain(
    batch: &mut Vec<Msg>,
    input: &mut UnboundedReceiver<io::Result<Msg>>,
    io: &mut Io<'_>,
    data_open: &mut bool,
) -> anyhow::Result<()> {
    while batch.len() < BATCH {
        match input.try_recv() {
            Ok(Ok(m)) => batch.push(m),
            Ok(Err(e)) => return Err(e).context("reading terminal input"),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    while *data_open && batch.len() < BATCH {
        match io.data.try_recv() {
            Ok(m) => batch.push(m),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => *data_open = false,
        }
    }
    Ok(())
}
