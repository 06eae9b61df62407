//! After the last request in flight of a model: the optimum and the pre-load bound decide
//! whether to hold it over the gap, unload it, or load it again just in time.

use super::*;

impl Replay {
    /// A request of `m` left (ended or failed): the optimum and the pre-load bound
    /// decide on the idle gap.
    pub(super) fn leave(&mut self, m: usize, now: Duration, ahead: &Lookahead) {
        self.touch(m, now);
        self.held[m].active -= 1;
        if self.adaptive() && self.held[m].active == 0 {
            self.last_end[m] = Some(now);
            if self.policy == Policy::PreWarm
                && let Some(plan) = policies::prewarm_plan(
                    &self.gaps[m],
                    self.models[m].break_even_s,
                    self.models[m].load_s,
                )
            {
                let at = now + secs(plan.0);
                self.prewarm_hold[m] = Some(plan.1);
                self.prewarm_at[m] = Some(at);
                self.prewarms.push(Reverse((at, m)));
            }
        }
        if self.held[m].active > 0 {
            return;
        }
        match self.policy {
            Policy::Optimum => self.optimum_leave(m, now, ahead),
            Policy::PreloadBound => self.preload_leave(m, now, ahead),
            _ => {}
        }
    }

    /// The optimum after the last request in flight of `m` ended: hold the model across
    /// the gap to its next arrival iff the gap is within its threshold (the keep_alive
    /// it sent keeps it that long), unload it now otherwise.
    fn optimum_leave(&mut self, m: usize, now: Duration, ahead: &Lookahead) {
        let Some(threshold) = self.optimum_hold[m] else {
            return;
        };
        let at = now.as_secs_f64();
        let next = ahead.next_at_or_after(m, at);
        // A request can end past the read-ahead window (a long queue or answer): with no
        // arrival read ahead and the input not read as far as the threshold, the gap is
        // not known yet, and the model is held as the keep_alive it sent holds it.
        if next.is_none() && !ahead.reaches(at + threshold) {
            return;
        }
        if !crate::predict::optimum::holds(next.map(|n| n - at), threshold) {
            self.unload_now(m, now, ahead);
        }
    }

    /// Asks the scheduler to unload `m` now, if resident (E6).
    fn unload_now(&mut self, m: usize, now: Duration, ahead: &Lookahead) {
        if self.held[m].resident.is_none() {
            return;
        }
        let id = self.next_unload;
        self.next_unload += 1;
        self.out[m].unloads += 1;
        let _ = self.sched.submit(
            now,
            SchedRequest {
                id,
                model: self.models[m].name.clone(),
                num_ctx: None,
                keep_alive: Some(KeepAlive::from_duration(Duration::ZERO)),
                kind: RequestKind::Unload,
            },
        );
        self.handle_events(now, ahead);
    }

    /// The pre-load bound after the last request in flight of `m` ended: unload, and
    /// load again just in time for the next arrival when that pays.
    fn preload_leave(&mut self, m: usize, now: Duration, ahead: &Lookahead) {
        let Some(t_star) = self.models[m].break_even_s else {
            return;
        };
        let at = now.as_secs_f64();
        let next = ahead.next_at_or_after(m, at);
        // A load started this long before the arrival is done by then, whatever the
        // jitter; the model then waits about `margin` loaded and idle.
        let load = self.models[m].load_s * (1.0 + self.load_jitter);
        let margin = 2.0 * self.models[m].load_s * self.load_jitter + 0.05;
        let preload_at = next
            .map(|n| n - load - 0.05)
            .filter(|start| *start > at && margin < t_star);
        let keep = preload_at.is_none() && next.is_some_and(|n| n - at < t_star);
        if !keep {
            self.unload_now(m, now, ahead);
        }
        // With hindsight, load again just in time: cheaper than keeping the model over
        // the gap or than a cold start (it holds the memory only for `margin`).
        if let Some(start) = preload_at {
            let when = secs(start);
            self.prewarm_hold[m] = Some(margin + 1.0);
            self.prewarm_at[m] = Some(when);
            self.prewarms.push(Reverse((when, m)));
        }
    }
}
