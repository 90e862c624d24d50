//! Publishers: how they pace themselves, and what each one does from connect to teardown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::{Progress, Writer};
use crate::proto::{self, OpKind, OpRef};
use crate::worker::{Ctx, Inbox};

/// How a publisher paces itself.
#[derive(Clone)]
pub enum Pace {
    /// Open loop at `rate` publishes per second, the first one `phase` (0..1) of an
    /// interval after the start. Publishers get evenly spread phases, so together they send
    /// a smooth stream instead of one burst of every publisher per interval.
    Rate { rate: f64, phase: f64 },
    /// Closed loop: a send needs a permit; permits come back on ack or delivery.
    Window(Arc<Semaphore>),
}

/// One publisher: connects, joins its room (ringcast), waits for `go`, publishes until the
/// deadline or its share of `--messages`, then reports done and stays connected until teardown.
pub struct Publisher {
    pub index: u64,
    pub id: u32,
    pub room: String,
    pub pace: Pace,
    /// Permits come back on acks (closed loop, ack feedback).
    pub ack_feedback: bool,
    pub cap: u64,
}

impl Publisher {
    pub async fn run(self, ctx: Arc<Ctx>, mut go: watch::Receiver<bool>, ready: Arc<Progress>, done: Arc<Progress>) {
        let rec = ctx.stats.recorder();
        let raw = ctx.raw();
        let user = format!("u{}", self.index);
        let Some(mut ws) = ctx.open(self.index, Some(&user), raw.then_some(self.room.as_str()), &rec).await else {
            ready.failed();
            done.failed();
            return;
        };
        let mut inbox = Inbox::new(rec.clone(), raw);
        if !raw {
            if let Err(err) = crate::worker::join_rooms(
                &mut ws,
                &mut inbox,
                std::slice::from_ref(&self.room),
                Duration::from_secs(30),
                false,
            )
            .await
            {
                rec.connect_failed(&format!("join_{err}"));
                rec.closed();
                ready.failed();
                done.failed();
                return;
            }
        }
        if let (Pace::Window(window), true) = (&self.pace, self.ack_feedback) {
            inbox.send_window = Some(window.clone());
        }
        let (mut writer, reader) = Writer::split(&ctx, ws, inbox);
        ready.ok();
        // Wait for the start, answering pings meanwhile.
        writer
            .service_until(async {
                while !*go.borrow() {
                    if go.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        let deadline = Instant::now() + ctx.duration();
        let pad = ctx.plan.payload_bytes;
        let bare = ctx.plan.raw_bare;
        let mut n: u64 = 0;
        let send_batch = |n: &mut u64, batch: u64| -> Vec<String> {
            (0..batch)
                .map(|_| {
                    *n += 1;
                    let text = proto::stamp_text(self.id, *n, pad);
                    if raw && bare {
                        text
                    } else if raw {
                        proto::raw_chat_frame(&self.room, &user, &text, *n)
                    } else {
                        proto::send(&self.room, &text, Some(&OpRef::new(OpKind::Send, *n)))
                    }
                })
                .collect()
        };
        match &self.pace {
            Pace::Window(window) => {
                const MAX_BATCH: u64 = 256;
                while n < self.cap && !writer.broken {
                    let acquired = writer.service_until(tokio::time::timeout_at(deadline, window.acquire())).await;
                    match acquired {
                        Ok(Ok(permit)) => permit.forget(),
                        _ => break,
                    }
                    let mut batch = 1;
                    while batch < MAX_BATCH && n + batch < self.cap {
                        match window.try_acquire() {
                            Ok(permit) => {
                                permit.forget();
                                batch += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    for text in send_batch(&mut n, batch) {
                        if writer.text(text).await.is_err() {
                            break;
                        }
                    }
                    let _ = writer.flush().await;
                    rec.publishes(batch, !raw);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Pace::Rate { rate, phase } => {
                let rate = rate.max(0.001);
                let interval = Duration::from_secs_f64((1.0 / rate).max(0.001));
                let start = Instant::now() + interval.mul_f64(phase.clamp(0.0, 1.0));
                writer.service_until(tokio::time::sleep_until(start.min(deadline))).await;
                let mut next = start;
                while n < self.cap && !writer.broken && Instant::now() < deadline {
                    writer.service_until(tokio::time::sleep_until(next.min(deadline))).await;
                    let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                    let batch = due.saturating_sub(n).min(10_000).min(self.cap - n);
                    if batch > 0 {
                        for text in send_batch(&mut n, batch) {
                            if writer.text(text).await.is_err() {
                                break;
                            }
                        }
                        let _ = writer.flush().await;
                        rec.publishes(batch, !raw);
                    }
                    next += interval;
                    if next < Instant::now() - Duration::from_secs(1) {
                        next = Instant::now();
                    }
                }
            }
        }
        done.ok();
        writer.finish(ctx.shutdown.clone()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
        rec.closed();
    }
}

/// The pace of open-loop publisher `id` of `total`, `rate` publishes/s for all of them.
pub fn open_loop_pace(rate: f64, id: u64, total: u64) -> Pace {
    let total = total.max(1);
    Pace::Rate { rate: rate / total as f64, phase: id as f64 / total as f64 }
}

/// This publisher's share of `--messages` over `total` publishers.
pub fn message_cap(messages: Option<u64>, total: u64, id: u64) -> u64 {
    match messages {
        None => u64::MAX,
        Some(m) => m / total.max(1) + u64::from(id < m % total.max(1)),
    }
}
