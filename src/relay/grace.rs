//! The close grace of every closing session of a worker, on one timer.
//!
//! A session that starts closing waits [`CLOSE_GRACE`](super::session::CLOSE_GRACE)
//! for the close replies, then is cut. Re-arming the session's own idle
//! timer to that deadline was a timer registration earlier than the timer
//! wheel's next wake-up (the other sessions' idle deadlines lie minutes
//! away), and tokio then unparks the driver even on its own thread: one
//! eventfd `write` and one extra `epoll_wait` turn per closing session,
//! although the close replies nearly always come within a millisecond.
//!
//! Here the deadlines of a thread's closing sessions wait in one ordered
//! map, served by one task with one timer. A session that finishes closing
//! removes its entry and leaves that timer alone; the timer fires when the
//! earliest deadline armed falls due (at most about once per grace while
//! closes keep coming), wakes the sessions whose grace is over, and re-arms
//! for the next one. With nothing waiting it sleeps without a deadline.
//!
//! One clock per thread: a relay worker is one thread with a current-thread
//! runtime, so a worker's sessions share one, found without a pointer in
//! every session's future (an idle session does not get bigger).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep, sleep_until};

use super::registry::SessionId;

thread_local! {
    static CLOCK: Arc<GraceClock> = Arc::new(GraceClock::default());
}

/// Ready once `until` has passed: the close grace of session `id`. Polled
/// on every turn of the session's loop while it closes (cheap: the first
/// poll registers, later ones only refresh the waker).
pub fn poll_elapsed(id: SessionId, until: Instant, cx: &mut Context<'_>) -> Poll<()> {
    // The thread is going away (its locals with it): cut now.
    CLOCK
        .try_with(|clock| clock.poll_elapsed(id, until, cx))
        .unwrap_or(Poll::Ready(()))
}

/// The session no longer waits for its grace (it finished closing first):
/// its entry goes, so the clock does not wake it or keep its waker.
pub fn forget(id: SessionId, until: Instant) {
    let _ = CLOCK.try_with(|clock| clock.lock().waiting.remove(&(until, id)));
}

#[derive(Default)]
struct GraceClock {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Closing sessions by deadline.
    waiting: BTreeMap<(Instant, SessionId), Waker>,
    /// The deadline the clock's timer is armed for (`None`: unarmed).
    armed: Option<Instant>,
    /// The clock's task, to wake when a deadline earlier than `armed`
    /// arrives; `None` while no task runs (none yet, or its runtime is gone).
    task: Option<Waker>,
}

impl GraceClock {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoned only if a panic hit mid-update of a map of wakers: still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn poll_elapsed(
        self: &Arc<Self>,
        id: SessionId,
        until: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let mut state = self.lock();
        if Instant::now() >= until {
            state.waiting.remove(&(until, id));
            return Poll::Ready(());
        }
        match state.waiting.entry((until, id)) {
            std::collections::btree_map::Entry::Occupied(mut known) => {
                if !known.get().will_wake(cx.waker()) {
                    known.insert(cx.waker().clone());
                }
                return Poll::Pending;
            }
            std::collections::btree_map::Entry::Vacant(new) => {
                new.insert(cx.waker().clone());
            }
        }
        // A timer already armed no later than this deadline serves it.
        if state.armed.is_some_and(|armed| armed <= until) {
            return Poll::Pending;
        }
        match &state.task {
            Some(task) => task.wake_by_ref(),
            None => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    // Marks the task as running at once: the next session
                    // closing before it first runs must not spawn another.
                    state.task = Some(Waker::noop().clone());
                    drop(state);
                    runtime.spawn(serve(self.clone()));
                }
                // Not on a runtime (cannot happen in a session): no grace.
                Err(_) => {
                    state.waiting.remove(&(until, id));
                    return Poll::Ready(());
                }
            },
        }
        Poll::Pending
    }

    /// One turn of the clock's task: wakes the sessions whose grace is
    /// over, and arms its timer for the earliest one still waiting.
    fn poll_clock(&self, timer: &mut Option<Pin<Box<Sleep>>>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if !state.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.task = Some(cx.waker().clone());
        }
        loop {
            let now = Instant::now();
            while let Some(due) = state.waiting.first_entry() {
                if due.key().0 > now {
                    break;
                }
                // Waking only schedules the session: it runs after this.
                due.remove().wake();
            }
            let Some(&(next, _)) = state.waiting.keys().next() else {
                // Nothing waits: sleep without a deadline until a session
                // starts closing (a timer that already fired stays so).
                state.armed = None;
                return Poll::Pending;
            };
            // Armed earlier than `next` (that session finished closing):
            // let it fire, and re-arm then, rather than per session.
            let sleep = match timer {
                Some(sleep) => {
                    if state.armed.is_none_or(|armed| next < armed) || sleep.is_elapsed() {
                        sleep.as_mut().reset(next);
                    }
                    sleep
                }
                None => timer.insert(Box::pin(sleep_until(next))),
            };
            state.armed = Some(sleep.deadline());
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// The clock's task: runs while its runtime does. Its guard is made
/// before the task first runs, so a task dropped unpolled (its runtime
/// shutting down) still lets the next one start.
fn serve(clock: Arc<GraceClock>) -> impl Future<Output = ()> + Send {
    let stopped = Stopped(clock);
    let mut timer = None;
    async move {
        std::future::poll_fn(|cx| stopped.0.poll_clock(&mut timer, cx)).await;
    }
}

/// Dropped with the clock's task: the next session that closes on this
/// thread starts a new one.
struct Stopped(Arc<GraceClock>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.task = None;
        state.armed = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    /// Waits on the thread's clock for session `id` until `until`; returns
    /// when it completed.
    async fn wait(id: SessionId, until: Instant) -> Instant {
        std::future::poll_fn(|cx| poll_elapsed(id, until, cx)).await;
        Instant::now()
    }

    fn timers_armed() -> Option<Instant> {
        CLOCK.with(|clock| clock.lock().armed)
    }

    /// Each closing session is released at its own deadline, not before and
    /// not at a neighbour's; one that finished first leaves no entry, and
    /// the clock's one timer is not re-armed for every session that closes.
    #[tokio::test(start_paused = true)]
    async fn graces_end_at_their_deadlines_on_one_timer() {
        let start = Instant::now();
        let at = move |ms| start + Duration::from_millis(ms);
        let a = tokio::spawn(wait(1, at(1000)));
        let b = tokio::spawn(wait(2, at(1200)));
        // 3 finishes closing before its grace is over.
        let c = tokio::spawn(async move {
            tokio::select! {
                _ = wait(3, at(1100)) => unreachable!("its grace was forgotten"),
                () = tokio::time::sleep(Duration::from_millis(50)) => forget(3, at(1100)),
            }
        });
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        assert_eq!(
            timers_armed(),
            Some(at(1000)),
            "armed once, for the earliest"
        );
        c.await.unwrap();
        assert_eq!(timers_armed(), Some(at(1000)), "not re-armed when 3 left");
        assert_eq!(a.await.unwrap(), at(1000));
        assert_eq!(b.await.unwrap(), at(1200));
        // Nothing waits: no deadline stays armed (no wake-ups while idle).
        tokio::task::yield_now().await;
        assert_eq!(timers_armed(), None);
        assert!(CLOCK.with(|clock| clock.lock().waiting.is_empty()));
    }

    /// A deadline earlier than the one armed (grace deadlines come in order
    /// on one thread, but nothing relies on it) re-arms the timer.
    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_rearms_the_clock() {
        let start = Instant::now();
        let late = tokio::spawn(wait(1, start + Duration::from_millis(900)));
        tokio::task::yield_now().await;
        let early = tokio::spawn(wait(2, start + Duration::from_millis(300)));
        assert_eq!(early.await.unwrap(), start + Duration::from_millis(300));
        assert_eq!(late.await.unwrap(), start + Duration::from_millis(900));
    }

    /// The clock's task dies with its runtime; a later runtime on the same
    /// thread gets a new one (a session there is still released).
    #[test]
    fn a_new_runtime_on_the_thread_gets_a_new_clock_task() {
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let until = Instant::now() + Duration::from_millis(500);
                assert_eq!(wait(7, until).await, until);
                // Left waiting when the runtime goes.
                tokio::spawn(wait(8, Instant::now() + Duration::from_secs(5)));
                tokio::task::yield_now().await;
            });
            drop(runtime);
            assert!(CLOCK.with(|clock| clock.lock().task.is_none()));
            CLOCK.with(|clock| clock.lock().waiting.clear());
        }
    }
}
