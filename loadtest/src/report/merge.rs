//! Merging: what the parent adds up from its workers' messages.

use std::collections::BTreeMap;

use anyhow::Result;
use hdrhistogram::Histogram;

use super::hist::add_hist;
use super::{decode_hist, new_hist, Counts, Final, RunWindow, Tallies, Tick};

/// One second of the whole run.
#[derive(Debug, Clone)]
pub struct Second {
    pub phase: String,
    pub open: i64,
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub reported: usize,
}

/// Everything the parent merges from its workers.
#[derive(Debug)]
pub struct Aggregate {
    pub counts: Counts,
    pub tallies: Tallies,
    pub latency: Histogram<u64>,
    pub reply: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub seconds: BTreeMap<u32, Second>,
    pub finals: Vec<Final>,
}

impl Default for Aggregate {
    fn default() -> Self {
        Aggregate {
            counts: Counts::default(),
            tallies: Tallies::default(),
            latency: new_hist(),
            reply: new_hist(),
            connect: new_hist(),
            seconds: BTreeMap::new(),
            finals: Vec::new(),
        }
    }
}

impl Aggregate {
    /// Adds one worker's second; returns true when every one of `workers` has reported it.
    pub fn absorb_tick(&mut self, tick: &Tick, workers: usize) -> Result<bool> {
        self.counts.add(&tick.counts);
        self.tallies.add(&tick.tallies);
        let latency = tick.latency.as_deref().map(decode_hist).transpose()?;
        if let Some(hist) = &latency {
            add_hist(&mut self.latency, hist);
        }
        if let Some(hist) = tick.reply.as_deref().map(decode_hist).transpose()? {
            add_hist(&mut self.reply, &hist);
        }
        if let Some(hist) = tick.connect.as_deref().map(decode_hist).transpose()? {
            add_hist(&mut self.connect, &hist);
        }
        let second = self.seconds.entry(tick.second).or_insert_with(|| Second {
            phase: tick.phase.clone(),
            open: 0,
            counts: Counts::default(),
            latency: new_hist(),
            reported: 0,
        });
        second.open += tick.open;
        second.counts.add(&tick.counts);
        if let Some(hist) = &latency {
            add_hist(&mut second.latency, hist);
        }
        // The most advanced phase wins ("run" over "setup").
        if phase_rank(&tick.phase) > phase_rank(&second.phase) {
            second.phase = tick.phase.clone();
        }
        second.reported += 1;
        Ok(second.reported >= workers)
    }

    pub fn absorb_final(&mut self, fin: Final) {
        self.finals.push(fin);
    }

    /// The measured window of the whole run: counts add up, the window is the longest.
    pub fn run_window(&self) -> RunWindow {
        let mut run = RunWindow::default();
        for fin in &self.finals {
            run.secs = run.secs.max(fin.run.secs);
            run.sent += fin.run.sent;
            run.acked += fin.run.acked;
            run.delivered += fin.run.delivered;
        }
        run
    }

    pub fn peak_open(&self) -> i64 {
        self.seconds.values().map(|s| s.open).max().unwrap_or(0)
    }
}

pub fn phase_rank(phase: &str) -> u8 {
    match phase {
        "setup" => 0,
        "ramp" => 1,
        "run" | "hold" => 2,
        "drain" => 3,
        "teardown" => 4,
        _ => 0,
    }
}
