//! The workers as the parent sees them: one in this process, or `--processes N` children
//! that read the plan and barrier releases on stdin and write JSON lines on stdout; and
//! [`worker_main`], the child's side of those pipes.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{EXIT_ERROR, EXIT_PASS};
use crate::plan::Plan;
use crate::procfs;
use crate::report::WorkerMsg;
use crate::worker::{self, WorkerIo};

pub enum Event {
    Msg(WorkerMsg),
    Exited(String),
}

enum Control {
    InProcess(mpsc::UnboundedSender<String>),
    Child(tokio::process::ChildStdin),
}

impl Control {
    async fn release(&mut self, name: &str) -> Result<()> {
        match self {
            Control::InProcess(tx) => tx.send(name.to_string()).ok().context("worker is gone"),
            Control::Child(stdin) => {
                stdin.write_all(format!("{name}\n").as_bytes()).await?;
                stdin.flush().await?;
                Ok(())
            }
        }
    }
}

/// The started workers: their events (tagged with the worker's index), the way to release
/// them from a barrier, and the child processes.
pub struct Workers {
    pub events: mpsc::UnboundedReceiver<(usize, Event)>,
    controls: Vec<Control>,
    children: Vec<tokio::process::Child>,
}

impl Workers {
    /// Starts `plan.worker_count` workers: in this process when there is one, else as
    /// children running `ringcast-loadtest worker`.
    pub async fn start(plan: &Plan) -> Result<Workers> {
        let workers = plan.worker_count;
        let (tx, rx) = mpsc::unbounded_channel::<(usize, Event)>();
        let mut controls = Vec::with_capacity(workers);
        let mut children = Vec::new();
        if workers == 1 {
            controls.push(start_in_process(plan, &tx));
        } else {
            let exe = std::env::current_exe().context("cannot find my own executable")?;
            for index in 0..workers {
                let (control, child) = start_child(&exe, plan, index, &tx).await?;
                controls.push(control);
                children.push(child);
            }
        }
        drop(tx);
        Ok(Workers { events: rx, controls, children })
    }

    /// Releases every worker from the barrier `name`.
    pub async fn release(&mut self, name: &str) -> Result<()> {
        for control in &mut self.controls {
            control.release(name).await?;
        }
        Ok(())
    }

    /// The processes that generate the load: this one, and the children when there are any.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id()).chain(self.children.iter().filter_map(|c| c.id())).collect()
    }

    /// Gives each child process a few seconds to exit; one still running is killed.
    pub async fn wait_children(&mut self) {
        for mut child in std::mem::take(&mut self.children) {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

/// The single worker, as a task of this process.
fn start_in_process(plan: &Plan, tx: &mpsc::UnboundedSender<(usize, Event)>) -> Control {
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let (rel_tx, rel_rx) = mpsc::unbounded_channel();
    let io = Arc::new(WorkerIo { out: out_tx, releases: tokio::sync::Mutex::new(rel_rx) });
    tokio::spawn(worker::run(plan.for_worker(0), io));
    let tx = tx.clone();
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let _ = tx.send((0, Event::Msg(msg)));
        }
        let _ = tx.send((0, Event::Exited("ended".into())));
    });
    Control::InProcess(rel_tx)
}

/// Worker `index` as a child process: its plan goes on its stdin's first line.
async fn start_child(
    exe: &Path,
    plan: &Plan,
    index: usize,
    tx: &mpsc::UnboundedSender<(usize, Event)>,
) -> Result<(Control, tokio::process::Child)> {
    let mut child = tokio::process::Command::new(exe)
        .arg("worker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a worker process")?;
    let mut stdin = child.stdin.take().context("worker stdin")?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut line = serde_json::to_string(&plan.for_worker(index))?;
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await?;
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<WorkerMsg>(&line) {
                Ok(msg) => {
                    let _ = tx.send((index, Event::Msg(msg)));
                }
                Err(err) => eprintln!("ringcast-loadtest: worker {index} said something odd ({err}): {line}"),
            }
        }
        let _ = tx.send((index, Event::Exited("stdout closed".into())));
    });
    Ok((Control::Child(stdin), child))
}

/// `ringcast-loadtest worker`: the plan on stdin's first line, barrier releases after it,
/// JSON lines on stdout.
pub fn worker_main() -> Result<i32> {
    let mut first = String::new();
    std::io::stdin().read_line(&mut first).context("reading the plan")?;
    let plan: Plan = serde_json::from_str(&first).context("bad plan")?;
    procfs::raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(plan.threads).enable_all().build()?;
    runtime.block_on(async move {
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WorkerMsg>();
        let (rel_tx, rel_rx) = mpsc::unbounded_channel();
        let io = Arc::new(WorkerIo { out: out_tx, releases: tokio::sync::Mutex::new(rel_rx) });
        let writer = tokio::spawn(async move {
            let mut stdout = tokio::io::stdout();
            while let Some(msg) = out_rx.recv().await {
                let last = matches!(msg, WorkerMsg::Final(_));
                let mut line = serde_json::to_string(&msg).unwrap_or_default();
                line.push('\n');
                if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() || last {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if rel_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let fin = worker::run(plan, io).await;
        // The writer ends after writing the final message.
        let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        Ok(if fin.error.is_some() { EXIT_ERROR } else { EXIT_PASS })
    })
}
