//! The scheduler's events, turned into the replay's figures: a dispatch times the
//! request (TTFT, end to end, cold), a load or unload moves the memory held.

use super::*;

impl Replay {
    pub(super) fn handle_events(&mut self, now: Duration, ahead: &Lookahead) {
        let mut finished_loads = Vec::new();
        for event in self.sched.drain_events() {
            match event {
                SchedEvent::Dispatched {
                    id,
                    load_duration,
                    loaded,
                } => {
                    if (PREWARM_ID..UNLOAD_ID).contains(&id) {
                        finished_loads.push(id);
                        continue;
                    }
                    let Some(f) = self.flights.get(&id).copied() else {
                        continue;
                    };
                    let spec = &self.models[f.model].spec;
                    let cold = loaded || load_duration >= self.settings.cold_threshold;
                    // As the simulator: handed over at receipt + load_duration.
                    let dispatch = now.max(f.arrival + load_duration);
                    let prefill = spec.prefill_time(u64::from(f.prompt));
                    // A measured service time (a server log's) stands for the model's.
                    let (first_token, end) = match f.service {
                        Some(s) => (dispatch + prefill.min(s), dispatch + s),
                        None => (
                            dispatch + prefill,
                            dispatch + prefill + spec.decode_time(u64::from(f.output)),
                        ),
                    };
                    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                    let o = &mut self.out[f.model];
                    o.busy_s += end.saturating_sub(dispatch).as_secs_f64();
                    let group = if cold { 2 } else { 1 };
                    let ttft = ms(first_token - f.arrival);
                    let e2e = ms(end - f.arrival);
                    self.ttft.record_ms(ttft);
                    for g in [0, group] {
                        o.ttft[g].record_ms(ttft);
                        o.e2e[g].record_ms(e2e);
                    }
                    if cold {
                        o.cold += 1;
                        let in_train = f.arrival.as_secs_f64() < self.settings.split_s;
                        if in_train {
                            o.train.cold += 1;
                        }
                        // The first cold request of a load charges it; the others that
                        // waited on the same load share it.
                        if self.charged_gen[f.model] != self.load_gen[f.model] {
                            self.charged_gen[f.model] = self.load_gen[f.model];
                            o.cold_loads += 1;
                            if in_train {
                                o.train.cold_loads += 1;
                            }
                        }
                        o.load.record_ms(ms(load_duration));
                    }
                    self.finishes.push(Reverse((end, id)));
                }
                SchedEvent::Failed { id, .. } => {
                    if let Some(f) = self.flights.remove(&id) {
                        self.out[f.model].errors += 1;
                        self.last = self.last.max(now);
                        self.leave(f.model, now, ahead);
                    }
                }
                SchedEvent::Loaded { model, size } => {
                    let Some(m) = self.model_of(&model) else {
                        continue;
                    };
                    let vram = self
                        .sched
                        .ps(now)
                        .iter()
                        .find(|p| p.name == model)
                        .map_or(0, |p| p.size_vram)
                        .min(size);
                    self.touch(m, now);
                    self.held[m].resident = Some((vram, size - vram));
                    self.out[m].loads += 1;
                    self.load_gen[m] += 1;
                    self.total.0 += vram;
                    self.total.1 += size - vram;
                    if self.total.0 + self.total.1 > self.peak.0 + self.peak.1 {
                        self.peak = self.total;
                    }
                }
                SchedEvent::Unloaded { model, reason } => {
                    let Some(m) = self.model_of(&model) else {
                        continue;
                    };
                    self.touch(m, now);
                    if let Some((gpu, ram)) = self.held[m].resident.take() {
                        self.total.0 -= gpu;
                        self.total.1 -= ram;
                    }
                    match reason {
                        "evicted" => self.out[m].evictions += 1,
                        "expired" => self.out[m].expirations += 1,
                        _ => {}
                    }
                    if std::mem::take(&mut self.prewarm_unused[m]) {
                        self.out[m].wasted_loads += 1;
                    }
                    if let Some(log) = &mut self.unload_events
                        && matches!(reason, "evicted" | "expired")
                    {
                        log.push(UnloadEvent {
                            t: now.as_secs_f64(),
                            model: m,
                            evicted: reason == "evicted",
                        });
                    }
                }
                SchedEvent::LoadStarted { .. } => {}
            }
        }
        // Empty-prompt loads are done once dispatched, as Ollama answers them.
        if !finished_loads.is_empty() {
            for id in finished_loads {
                self.sched.finish(now, id);
            }
            self.handle_events(now, ahead);
        }
    }
}
