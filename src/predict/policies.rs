//! The adaptive keep_alive policies a client can run, each deciding per request from
//! the model's recent idle gaps (time from a request's end, with nothing else in
//! flight, to the model's next arrival), held in a sliding window of log-spaced bins
//! (8 per decade from 0.1 s, so a decision costs a pass over 64 bins):
//!
//! - **histogram** (after Shahrad et al., ATC'20, "Serverless in the Wild"): keep_alive
//!   = a margin over a high percentile of the window; Ollama's default 5m while it is
//!   thin. Cost-blind: it keeps a model through almost every gap, whatever that costs;
//! - **adaptive**: the keep_alive that would have cost least over the window, pricing
//!   both sides: a gap shorter than k costs holding for the gap, a longer one holding
//!   for k plus a reload, in units of the break-even time T* (one reload's cost ÷ the
//!   cost rate of holding the model); T* itself while thin (the classic 2-competitive
//!   rent-or-buy choice);
//! - **pre-warm**: for a periodic or scheduled client only (its recent gaps' spread,
//!   5th to 95th percentile, costs less to hold than a reload), unload after use
//!   (keep_alive 0) and load with an empty prompt shortly before the next arrival the
//!   window predicts (its low percentile, less the load time and a margin), holding it
//!   until the window's high percentile; otherwise it keeps the model as the adaptive
//!   policy does.

use std::collections::VecDeque;

/// Bins per decade.
const PER_DECADE: f64 = 8.0;
/// Upper edge of the first bin, seconds.
const FIRST_EDGE: f64 = 0.1;
/// Bins: 0.1 s up to 10^7 s (about 115 days); longer gaps fall in the last.
pub const BINS: usize = 64;

/// Upper edge of bin `j`, seconds.
pub fn edge(j: usize) -> f64 {
    FIRST_EDGE * 10f64.powf(j as f64 / PER_DECADE)
}

/// Lower edge of bin `j` (0 for the first).
pub fn lower_edge(j: usize) -> f64 {
    if j == 0 { 0.0 } else { edge(j - 1) }
}

/// The bin of a gap of `gap` seconds.
pub fn bin_of(gap: f64) -> usize {
    if gap <= FIRST_EDGE {
        return 0;
    }
    let j = ((gap / FIRST_EDGE).log10() * PER_DECADE).ceil() as usize;
    // Floating point at an edge: the gap belongs to the first bin whose edge holds it.
    let j = j.min(BINS - 1);
    if j > 0 && gap <= edge(j - 1) {
        j - 1
    } else {
        j
    }
}

/// The last `cap` idle gaps of one model, binned.
#[derive(Debug, Clone)]
pub struct GapWindow {
    counts: [u32; BINS],
    sums: [f64; BINS],
    ring: VecDeque<(u8, f64)>,
    cap: usize,
}

impl GapWindow {
    /// A window of the last `cap` gaps.
    pub fn new(cap: usize) -> GapWindow {
        GapWindow {
            counts: [0; BINS],
            sums: [0.0; BINS],
            ring: VecDeque::with_capacity(cap.min(1 << 16)),
            cap: cap.max(1),
        }
    }

    /// Adds a gap, forgetting the oldest when full.
    pub fn push(&mut self, gap: f64) {
        let gap = gap.max(0.0);
        if self.ring.len() == self.cap
            && let Some((b, g)) = self.ring.pop_front()
        {
            self.counts[b as usize] -= 1;
            self.sums[b as usize] -= g;
        }
        let b = bin_of(gap);
        self.counts[b] += 1;
        self.sums[b] += gap;
        self.ring.push_back((b as u8, gap));
    }

    /// Gaps held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The `p` quantile (0..1) of the gaps held, exact (from the gaps themselves, not
    /// their bins).
    pub fn exact_quantile(&self, p: f64) -> Option<f64> {
        let n = self.ring.len();
        if n == 0 {
            return None;
        }
        let mut v: Vec<f64> = self.ring.iter().map(|(_, g)| *g).collect();
        let i = (((p * n as f64).ceil() as usize).clamp(1, n)) - 1;
        let (_, x, _) = v.select_nth_unstable_by(i, f64::total_cmp);
        Some(*x)
    }

    /// The bin holding the `p` quantile (0..1).
    pub fn quantile_bin(&self, p: f64) -> Option<usize> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let want = ((p * n as f64).ceil() as u64).clamp(1, n as u64);
        let mut seen = 0u64;
        for (j, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return Some(j);
            }
        }
        Some(BINS - 1)
    }

    /// The keep_alive (0 or a bin's upper edge) of least cost over the window, in units
    /// of holding time: Σ min(gap, k) + (k + T*) · #{gap > k}, with `t_star` the
    /// break-even time; ties go to the shorter.
    pub fn cheapest(&self, t_star: f64) -> f64 {
        let n: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        let mut best = (t_star * n as f64, 0.0);
        let (mut below_sum, mut below_n) = (0.0, 0u64);
        for j in 0..BINS {
            below_sum += self.sums[j];
            below_n += u64::from(self.counts[j]);
            if self.counts[j] == 0 {
                continue;
            }
            let k = edge(j);
            let cost = below_sum + (k + t_star) * (n - below_n) as f64;
            if cost < best.0 - 1e-9 {
                best = (cost, k);
            }
        }
        best.1
    }
}

/// Settings of the histogram policy.
pub const HISTOGRAM_PERCENTILE: f64 = 0.99;
/// Margin over the percentile.
pub const HISTOGRAM_MARGIN: f64 = 1.1;
/// Gaps before the histogram is trusted.
pub const HISTOGRAM_MIN: usize = 10;
/// keep_alive while the histogram is thin: Ollama's default.
pub const HISTOGRAM_FALLBACK_S: f64 = 300.0;
/// Gaps every adaptive policy remembers per model.
pub const WINDOW: usize = 200;
/// Gaps before the adaptive and pre-warm policies trust the window.
pub const ADAPTIVE_MIN: usize = 5;
/// Pre-warm: the low and high percentiles of the next gap.
pub const PREWARM_LOW: f64 = 0.05;
/// The high one.
pub const PREWARM_HIGH: f64 = 0.95;
/// Pre-warm: how early the load finishes before the predicted arrival, seconds.
pub const PREWARM_MARGIN_S: f64 = 1.0;

/// keep_alive of the histogram policy, seconds.
pub fn histogram_keep_alive(w: &GapWindow) -> f64 {
    if w.len() < HISTOGRAM_MIN {
        return HISTOGRAM_FALLBACK_S;
    }
    w.quantile_bin(HISTOGRAM_PERCENTILE)
        .map_or(HISTOGRAM_FALLBACK_S, |j| edge(j) * HISTOGRAM_MARGIN)
}

/// keep_alive of the adaptive policy, seconds (`None`: forever, holding costs nothing).
pub fn adaptive_keep_alive(w: &GapWindow, t_star: Option<f64>) -> Option<f64> {
    let t = t_star?;
    if w.len() < ADAPTIVE_MIN {
        return Some(t);
    }
    Some(w.cheapest(t))
}

/// What pre-warm does after a request: `Some((load_at, hold_s))`: unload now, load
/// `load_at` seconds after the end and keep it `hold_s` once loaded; `None`: keep the
/// model as the adaptive policy does.
///
/// Only a periodic or scheduled client's gaps qualify (a cron job, a polling agent, a
/// batch at a fixed hour): the spread of its recent gaps, from their 5th to their 95th
/// percentile (exact, not binned), plus the load and its margins, must cost less to hold
/// than one reload (shorter than T*), and the shortest gap must leave room to unload
/// and load again. On i.i.d.-like gaps that spread is wide and pre-warm keeps the
/// model as the adaptive policy does.
pub fn prewarm_plan(w: &GapWindow, t_star: Option<f64>, load_s: f64) -> Option<(f64, f64)> {
    let t_star = t_star?;
    if w.len() < ADAPTIVE_MIN {
        return None;
    }
    let low = w.exact_quantile(PREWARM_LOW)?;
    let high = w.exact_quantile(PREWARM_HIGH)?;
    let load_at = low - load_s - PREWARM_MARGIN_S;
    let hold = high - low + load_s + 2.0 * PREWARM_MARGIN_S;
    // Unloading pays only if the model would sit idle longer than a reload is worth,
    // and pre-loading only if the window it must then be held over costs less.
    if load_at <= 0.0 || low < t_star || hold >= t_star {
        return None;
    }
    Some((load_at, hold))
}

/// Whether a model's recent gaps are periodic enough for pre-warm to act on them.
pub fn is_periodic(w: &GapWindow, t_star: Option<f64>, load_s: f64) -> bool {
    prewarm_plan(w, t_star, load_s).is_some()
}

/// The per-request rule of each adaptive policy, for people.
pub fn rule(name: &str) -> Option<String> {
    Some(match name {
        "histogram" => format!(
            "per request, per model: keep_alive = {HISTOGRAM_MARGIN} × the {:.0}th percentile of the model's last {WINDOW} idle gaps ({HISTOGRAM_FALLBACK_S:.0}s until {HISTOGRAM_MIN} are seen); cost-blind",
            HISTOGRAM_PERCENTILE * 100.0
        ),
        "adaptive" => format!(
            "per request, per model: keep_alive = the k that minimises Σ min(gap, k) + (k + T*)·#{{gap > k}} over the model's last {WINDOW} idle gaps (T* = the break-even time; T* itself until {ADAPTIVE_MIN} gaps are seen). Client: gaps.append(start - last_end); ka = min([0] + sorted(gaps), key=lambda k: sum(min(g, k) for g in gaps) + (k + T) * sum(g > k for g in gaps)); send \"keep_alive\": f\"{{ka:.0f}}s\""
        ),
        "pre-warm" => format!(
            "per request, per model, for a periodic client only: send \"keep_alive\": 0, then at end + p{:.0}(gaps) - load - {PREWARM_MARGIN_S:.0}s POST /api/generate {{\"model\": M, \"keep_alive\": \"<p{:.0} - p{:.0} + load + 2s>s\"}} (an empty-prompt load); when that hold is not shorter than T* (the gaps are not periodic), p{:.0} is below T* or the load would not fit before it, the adaptive rule instead",
            PREWARM_LOW * 100.0,
            PREWARM_HIGH * 100.0,
            PREWARM_LOW * 100.0,
            PREWARM_LOW * 100.0
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_hold_their_gaps() {
        for g in [0.0, 0.05, 0.1, 0.11, 1.0, 59.0, 60.0, 3600.0, 1e9] {
            let j = bin_of(g);
            assert!(g <= edge(j) || j == BINS - 1, "{g} in {j}");
            assert!(g > lower_edge(j) || j == 0, "{g} in {j}");
        }
    }

    #[test]
    fn the_window_forgets_the_oldest() {
        let mut w = GapWindow::new(3);
        for g in [1000.0, 1.0, 1.0, 1.0] {
            w.push(g);
        }
        assert_eq!(w.len(), 3);
        assert!(edge(w.quantile_bin(1.0).unwrap()) < 2.0);
    }

    #[test]
    fn the_cheapest_keep_alive_prices_both_sides() {
        let mut w = GapWindow::new(100);
        // Gaps of 30 s with T* = 60 s: holding through each (30) beats a reload (60).
        for _ in 0..20 {
            w.push(30.0);
        }
        let k = w.cheapest(60.0);
        assert!((30.0..40.0).contains(&k), "{k}");
        // With T* = 10 s a reload is cheaper than holding 30 s: unload at once.
        assert_eq!(w.cheapest(10.0), 0.0);
        // A mix: 90% short (5 s), 10% long (1 h), T* = 60 s: keep over the short only.
        let mut w = GapWindow::new(100);
        for i in 0..100 {
            w.push(if i % 10 == 0 { 3600.0 } else { 5.0 });
        }
        let k = w.cheapest(60.0);
        assert!((5.0..7.0).contains(&k), "{k}");
        // The histogram rule keeps through the hour, whatever it costs.
        assert!(histogram_keep_alive(&w) > 3600.0);
    }

    #[test]
    fn pre_warm_plans_only_when_unloading_pays() {
        let mut w = GapWindow::new(100);
        for _ in 0..10 {
            w.push(600.0);
        }
        let (at, hold) = prewarm_plan(&w, Some(60.0), 2.0).unwrap();
        assert!(at < 600.0 - 2.0 && at > 400.0, "{at}");
        assert!(at + 2.0 + hold > 600.0, "{at} {hold}");
        // Gaps below T*: keep instead.
        assert!(prewarm_plan(&w, Some(1000.0), 2.0).is_none());
        // Gaps spread from 100 s to an hour (no period): holding over the spread costs
        // more than a reload, keep as adaptive does.
        let mut w = GapWindow::new(100);
        for i in 0..50 {
            w.push(100.0 * 36f64.powf(i as f64 / 49.0));
        }
        assert!(prewarm_plan(&w, Some(60.0), 2.0).is_none());
        // A period of 10 minutes with a few seconds of jitter: pre-warm.
        let mut w = GapWindow::new(100);
        for i in 0..50 {
            w.push(600.0 + (i % 7) as f64);
        }
        let (at, hold) = prewarm_plan(&w, Some(60.0), 2.0).unwrap();
        assert!((596.0..598.0).contains(&at), "{at}");
        assert!((9.0..11.0).contains(&hold), "{hold}");
        assert!(prewarm_plan(&GapWindow::new(10), Some(60.0), 2.0).is_none());
    }
}
