//! The log's requests in start order, through a buffer as deep as the longest latency.

use super::*;

impl Source for OllamaLog {
    fn scan(&self) -> &Scan {
        &self.scan
    }

    fn logged_unloads(&self) -> Option<&[LoggedUnload]> {
        self.debug.then_some(self.unloads.as_slice())
    }

    fn requests(&self) -> Result<RequestIter, TrafficError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Request, TrafficError>>(4096);
        let path = self.scan.path.clone();
        let mut options = self.options.clone();
        options.strict = false;
        let first_offset = self.first_offset;
        let models: HashMap<String, u32> = self
            .scan
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        let clients: HashMap<String, u32> = self
            .scan
            .clients
            .iter()
            .enumerate()
            .map(|(i, m)| (m.clone(), i as u32))
            .collect();
        // In order, a request can start at most the longest latency before one read
        // earlier; out of order, everything is held and sorted at the end.
        let depth = if self.scan.sorted {
            self.max_latency_s
        } else {
            f64::INFINITY
        };
        let (first_abs, scale) = (self.first_abs, self.options.time_scale);
        let keep_alives = self.scan.keep_alives.clone();
        std::thread::spawn(move || {
            let mut reader = Reader::new(&path, options, first_offset);
            // Requests by start time; one is released once a request has ended later
            // than its start plus the longest latency (none can start before it then).
            let mut heap: BinaryHeap<Reverse<(OrdF64, u64)>> = BinaryHeap::new();
            let mut held: HashMap<u64, Request> = HashMap::new();
            let mut seq = 0u64;
            // Per model: the latest request read, which a timer line after it belongs to.
            let mut latest: HashMap<u32, u64> = HashMap::new();
            let send = |r: Request| tx.send(Ok(r)).is_ok();
            let result = for_each_line(&path, None, |text| {
                let event = reader.read(text)?;
                let timer = match &event {
                    Event::Timer { model, seconds } => Some((model, *seconds)),
                    Event::Unload {
                        model, zero: true, ..
                    } => Some((model, 0.0)),
                    _ => None,
                };
                // The keep_alive the model's latest request sent, from the scheduler's
                // timer line right after it (that request is still held: see below).
                if let Some((model, seconds)) = timer
                    && let Some(m) = models.get(model)
                    && let Some(id) = latest.get(m)
                    && let Some(r) = held.get_mut(id)
                    && r.keep_alive.is_none()
                {
                    let k = timer_keep_alive(seconds);
                    r.keep_alive = keep_alives
                        .iter()
                        .position(|v| v.seconds_or_infinity() == k.seconds_or_infinity())
                        .map(|i| i as u32);
                }
                if let Event::Request {
                    start,
                    end,
                    model,
                    client,
                    service,
                } = event
                {
                    let Some(&m) = models.get(&model) else {
                        return Err(read_error(
                            &path,
                            "the file changed between its scan and its replay",
                        ));
                    };
                    seq += 1;
                    latest.insert(m, seq);
                    held.insert(
                        seq,
                        Request {
                            t: (start - first_abs) * scale,
                            model: m,
                            prompt_tokens: None,
                            output_tokens: None,
                            num_ctx: None,
                            client: clients.get(&client).copied(),
                            keep_alive: None,
                            service_s: Some(service),
                            kind: crate::traffic::Kind::Serve,
                        },
                    );
                    heap.push(Reverse((OrdF64(start), seq)));
                    // The request just read stays held until the next access line (its
                    // timer line comes after its access line).
                    while let Some(Reverse((OrdF64(s), id))) = heap.peek().copied() {
                        if s + depth > end || id == seq {
                            break;
                        }
                        heap.pop();
                        if let Some(r) = held.remove(&id)
                            && !send(r)
                        {
                            return Err(read_error(&path, "the replay stopped"));
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                let _ = tx.send(Err(e));
                return;
            }
            while let Some(Reverse((_, id))) = heap.pop() {
                if let Some(r) = held.remove(&id)
                    && !send(r)
                {
                    return;
                }
            }
        });
        Ok(Box::new(rx.into_iter()))
    }
}

/// An `f64` with a total order (for the start-time heap).
#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF64(f64);

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
