//! The timely dataflow: a function from a stream of [`CoreInput`] to a stream of [`CoreOutput`], with
//! every operator named.
//!
//! ```text
//! input ─ Validate ─▶ Dedup (exchange by site) ─▶ AssignWindow ─▶ Aggregate ─▶ SiteRows ─▶ output
//!            │                                     │  │                          └▶ RollupDistrict (by district) ─▶ output
//!            │ rejects                     outcomes │  └ dropped (duplicate, too_late) ─▶ output
//!            └──────────────────────────────────────┴▶ Quality (by source) ─▶ output
//! ```
//! Exchanges: Dedup by the site's worker ([`SitePlacement`]); Quality by the source's registered
//! site's worker when the source is registered (so a registered device's outcomes stay on the
//! worker that deduplicated them), else by the source's hash; RollupDistrict by district. Dedup and
//! Quality move whole containers where all records go to one worker (`WholeDistributor`) instead
//! of timely's per-record re-buffering.
//! Validate, AssignWindow and SiteRows are splits: one operator with several outputs that moves each
//! record to one of them (timely clones a whole batch for every extra reader of a stream).
//!
//! Readings travel as [`CoreReading`]s (~110 bytes, ids as [`crate::symbol::Sym`]s), so a move is
//! cheap and the exchanges route by the symbol's precomputed hash ([`Sym::route`](crate::symbol::Sym::route): the same value
//! in every process, so a cluster routes consistently). Timed operators hand their output vector
//! to timely as one container instead of copying record by record.
//!
//! # Time and watermark
//! Timestamps are watermark times in ms (u64). The feeder stamps each ingest batch (one group commit
//! of the writer, i.e. every message buffered at once) with the watermark before that batch and then
//! advances its input to the new watermark. The watermark is a **robust event-time clock capped by
//! processing time** (see [`crate::watermark`]): every device's newest event time, capped at the wall
//! clock, with the newest 10 % of device clocks ignored and silent devices leaving the set — so neither
//! one fast device clock (live or in a historical replay) nor one stuck one moves it for everyone — and
//! it moves with the wall clock while sources are quiet. With several processes the timely frontier is
//! the minimum over every feeder, i.e. the lowest watermark wins.
//!
//! # Determinism
//! Every stateful operator ([`TimedCore`]) stashes inputs by time and processes, in time order, (a) due
//! window closes and (b) the stash of each complete time (sorted by key), only for times the frontier
//! has passed. Results therefore do not depend on worker count, exchange order or scheduling.

use crate::dedup::{DedupCore, Seen, SeenOutcome};
use crate::model::{
    CoreInput, CoreOutput, CoreReading, SiteInfo, SitePlacement, WindowConfig, route_hash,
};
use crate::quality::{QualityCore, QualityIn};
use crate::rollup::RollupCore;
use crate::store::QualityRow;
use crate::symbol::Sym;
use crate::window::{EngineOut, WindowEngine};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use telemetry::message::WindowAggregate;
use timely::communication::Push;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{
    DistributorPact, Exchange, ParallelizationContract, Pipeline,
};
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::{Message, Stamp};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::{Concat, Operator, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};

/// A sans-IO core driven in time order by [`timed`].
pub trait TimedCore: 'static {
    /// Input record.
    type In: Clone + 'static;
    /// Output record.
    type Out: Clone + 'static;
    /// Next time at which `close_until` has work.
    fn next_close(&self, finishing: bool) -> Option<u64>;
    /// Does the work due at or before `t`.
    fn close_until(&mut self, t: u64, finishing: bool, out: &mut Vec<Self::Out>);
    /// Takes the complete input of time `t`.
    fn ingest(&mut self, t: u64, batch: Vec<Self::In>, out: &mut Vec<Self::Out>);
}

/// Wraps a [`TimedCore`] in a `unary_frontier` operator; see the module notes.
pub fn timed<'s, C, P>(
    stream: StreamVec<'s, u64, C::In>,
    pact: P,
    name: &str,
    mut core: C,
) -> StreamVec<'s, u64, C::Out>
where
    C: TimedCore,
    P: ParallelizationContract<u64, Vec<C::In>>,
{
    stream.unary_frontier(pact, name, move |cap, _info| {
        let mut held = Some(cap);
        // Received containers by time, moved in as they are (no copy, no regrowth of one big
        // vector); joined once, at their exact total size, when the time is processed.
        let mut stash: BTreeMap<u64, Vec<Vec<C::In>>> = BTreeMap::new();
        let mut out = Vec::new();
        move |(input, frontier), output| {
            input.for_each(|cap, data| {
                // Messages under no capability carry no progress claim; none are sent here.
                if let Some(t) = cap.least() {
                    stash.entry(*t).or_default().push(std::mem::take(data));
                }
            });
            let f = frontier.frontier().first().copied();
            let finishing = f.is_none();
            let Some(cap) = held.as_mut() else { return };
            loop {
                let ns = stash.keys().next().copied();
                let nc = core.next_close(finishing);
                let next = match (ns, nc) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => match a.or(b) {
                        Some(x) => x,
                        None => break,
                    },
                };
                if f.is_some_and(|f| next >= f) {
                    break;
                }
                let x = next.max(*cap.time());
                core.close_until(x, finishing, &mut out);
                if ns == Some(next) {
                    let mut parts = stash.remove(&next).unwrap_or_default();
                    let batch = if parts.len() == 1 {
                        parts.pop().unwrap_or_default()
                    } else {
                        let mut b = Vec::with_capacity(parts.iter().map(Vec::len).sum());
                        for mut p in parts {
                            b.append(&mut p);
                        }
                        b
                    };
                    core.ingest(x, batch, &mut out);
                    core.close_until(x, finishing, &mut out);
                }
                cap.downgrade(&x);
                if !out.is_empty() {
                    // Hand the vector over as one container (no per-record copy); what comes
                    // back is unspecified, so start empty.
                    output.session(&*cap).give_container(&mut out);
                    out.clear();
                }
            }
            match f {
                Some(f) => {
                    let target = core
                        .next_close(false)
                        .map_or(f, |c| c.min(f))
                        .max(*cap.time());
                    cap.downgrade(&target);
                }
                None => held = None,
            }
        }
    })
}

/// A named stateless operator that moves each record to one of three outputs (pipeline). Unlike several
/// `flat_map`s on one stream, records are not cloned per consumer (timely clones a batch for every
/// extra reader of a stream, which for readings is most of the pipeline's copying).
#[allow(clippy::type_complexity)]
fn split3<'s, D, A, B, C>(
    stream: StreamVec<'s, u64, D>,
    name: &str,
    mut f: impl FnMut(D, &mut Vec<A>, &mut Vec<B>, &mut Vec<C>) + 'static,
) -> (
    StreamVec<'s, u64, A>,
    StreamVec<'s, u64, B>,
    StreamVec<'s, u64, C>,
)
where
    D: Clone + 'static,
    A: Clone + 'static,
    B: Clone + 'static,
    C: Clone + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), stream.scope());
    let mut input = builder.new_input(stream, Pipeline);
    let (o1, s1) = builder.new_output::<Vec<A>>();
    let (o2, s2) = builder.new_output::<Vec<B>>();
    let (o3, s3) = builder.new_output::<Vec<C>>();
    let mut o1 = OutputBuilder::<_, CapacityContainerBuilder<Vec<A>>>::from(o1);
    let mut o2 = OutputBuilder::<_, CapacityContainerBuilder<Vec<B>>>::from(o2);
    let mut o3 = OutputBuilder::<_, CapacityContainerBuilder<Vec<C>>>::from(o3);
    builder.build(move |_| {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        move |_frontiers| {
            let (mut h1, mut h2, mut h3) = (o1.activate(), o2.activate(), o3.activate());
            input.for_each(|cap, data| {
                // Sized up front: the sessions take the vectors away, so each would otherwise
                // regrow from empty for every container.
                a.reserve(data.len());
                b.reserve(data.len());
                for x in data.drain(..) {
                    f(x, &mut a, &mut b, &mut c);
                }
                if !a.is_empty() {
                    h1.session(&cap).give_container(&mut a);
                }
                if !b.is_empty() {
                    h2.session(&cap).give_container(&mut b);
                }
                if !c.is_empty() {
                    h3.session(&cap).give_container(&mut c);
                }
            });
        }
    });
    (s1, s2, s3)
}

/// A named stateless flat-map (pipeline).
fn named_flat_map<'s, D: Clone + 'static, E: Clone + 'static, I: IntoIterator<Item = E>>(
    stream: StreamVec<'s, u64, D>,
    name: &str,
    mut f: impl FnMut(D) -> I + 'static,
) -> StreamVec<'s, u64, E> {
    stream.unary(Pipeline, name, move |_, _| {
        move |input, output| {
            input.for_each(|time, data| {
                output
                    .session(&time)
                    .give_iterator(data.drain(..).flat_map(&mut f));
            });
        }
    })
}

/// A named sink: hands every record with its time to `f`; the returned stream is empty (probe it).
pub fn emit<'s, D: Clone + 'static>(
    stream: StreamVec<'s, u64, D>,
    name: &str,
    mut f: impl FnMut(u64, D) + 'static,
) -> StreamVec<'s, u64, ()> {
    stream.unary(Pipeline, name, move |_, _| {
        move |input, _output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<()>>>| {
            input.for_each(|cap, data| {
                let t = cap.least().copied().unwrap_or_default();
                for x in data.drain(..) {
                    f(t, x);
                }
            });
        }
    })
}

struct DedupOp(DedupCore);
/// Output of the dedup operator.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[allow(clippy::large_enum_variant)]
enum DedupOut {
    Reading(CoreReading),
    Seen(Seen),
}
impl TimedCore for DedupOp {
    type In = CoreReading;
    type Out = DedupOut;
    fn next_close(&self, _: bool) -> Option<u64> {
        None
    }
    fn close_until(&mut self, _: u64, _: bool, _: &mut Vec<DedupOut>) {}
    fn ingest(&mut self, t: u64, batch: Vec<CoreReading>, out: &mut Vec<DedupOut>) {
        let mut seen = Vec::new();
        out.reserve(2 * batch.len());
        self.0
            .ingest_with(t, batch, |r| out.push(DedupOut::Reading(r)), &mut seen);
        out.extend(seen.into_iter().map(DedupOut::Seen));
    }
}

struct AggOp(WindowEngine);
impl TimedCore for AggOp {
    type In = CoreReading;
    type Out = CoreOutput;
    fn next_close(&self, finishing: bool) -> Option<u64> {
        self.0.next_close(finishing)
    }
    fn close_until(&mut self, t: u64, finishing: bool, out: &mut Vec<CoreOutput>) {
        let mut o = Vec::new();
        self.0.close_until(t, finishing, &mut o);
        out.extend(o.into_iter().map(conv));
    }
    fn ingest(&mut self, t: u64, batch: Vec<CoreReading>, out: &mut Vec<CoreOutput>) {
        let mut o = Vec::new();
        self.0.ingest(t, batch, &mut o);
        out.extend(o.into_iter().map(conv));
    }
}
fn conv(e: EngineOut) -> CoreOutput {
    match e {
        EngineOut::Aggregate(a) => CoreOutput::Aggregate(a),
        EngineOut::Alert(a) => CoreOutput::Alert(a),
    }
}

struct QualityOp(QualityCore);
impl TimedCore for QualityOp {
    type In = QualityIn;
    type Out = QualityRow;
    fn next_close(&self, _: bool) -> Option<u64> {
        self.0.next_close()
    }
    fn close_until(&mut self, t: u64, _: bool, out: &mut Vec<QualityRow>) {
        self.0.close_until(t, out);
    }
    fn ingest(&mut self, t: u64, batch: Vec<QualityIn>, out: &mut Vec<QualityRow>) {
        self.0.ingest(t, batch, out);
    }
}

struct RollupOp(RollupCore);
impl TimedCore for RollupOp {
    type In = WindowAggregate;
    type Out = WindowAggregate;
    fn next_close(&self, _: bool) -> Option<u64> {
        None
    }
    fn close_until(&mut self, _: u64, _: bool, _: &mut Vec<WindowAggregate>) {}
    fn ingest(&mut self, t: u64, batch: Vec<WindowAggregate>, out: &mut Vec<WindowAggregate>) {
        self.0.ingest(t, batch, out);
    }
}

/// An exchange distributor that moves whole containers: a container whose records all go to one
/// worker is handed to that worker as it is (no per-record copy); a mixed one is split into one
/// vector per worker, each sized exactly and sent at once. Records go to worker `key mod peers`,
/// as with timely's [`Exchange`], so keys (and [`SitePlacement`]'s worker indices) mean the same.
/// Unlike timely's distributor, records are not re-buffered into ~8 KB containers: in this
/// dataflow the exchanged containers are a message's readings (mostly of one site) or a whole
/// time's output of one operator, so most move without a copy.
struct WholeDistributor<D, F> {
    route: F,
    /// Worker index of each record of the container being split (reused).
    dest: Vec<u32>,
    _records: std::marker::PhantomData<fn(D)>,
}

impl<D, F: FnMut(&D) -> u64> Distributor<Vec<D>> for WholeDistributor<D, F> {
    fn partition<T: Clone, P: Push<Message<T, Vec<D>>>>(
        &mut self,
        container: &mut Vec<D>,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        let peers = pushers.len() as u64;
        if container.is_empty() || peers == 0 {
            return;
        }
        self.dest.clear();
        let route = &mut self.route;
        self.dest
            .extend(container.iter().map(|x| (route(x) % peers) as u32));
        let first = self.dest[0];
        if self.dest.iter().all(|&w| w == first) {
            Message::push_at(container, stamp.clone(), &mut pushers[first as usize]);
            // What the pusher hands back is unspecified: leave the caller an empty container.
            container.clear();
            return;
        }
        let mut counts = vec![0usize; pushers.len()];
        for &w in &self.dest {
            counts[w as usize] += 1;
        }
        let mut parts: Vec<Vec<D>> = counts.iter().map(|&n| Vec::with_capacity(n)).collect();
        for (x, &w) in container.drain(..).zip(&self.dest) {
            parts[w as usize].push(x);
        }
        for (part, pusher) in parts.iter_mut().zip(pushers.iter_mut()) {
            if !part.is_empty() {
                Message::push_at(part, stamp.clone(), pusher);
            }
        }
    }

    fn flush<T: Clone, P: Push<Message<T, Vec<D>>>>(&mut self, _: &Stamp<T>, _: &mut [P]) {
        // Nothing is buffered between containers.
    }
}

/// A parallelization contract sending each record to worker `route(record) mod peers`, moving
/// whole containers where it can ([`WholeDistributor`]).
fn exchange_whole<D: 'static, F: FnMut(&D) -> u64 + 'static>(
    route: F,
) -> DistributorPact<impl FnOnce(usize) -> WholeDistributor<D, F>> {
    DistributorPact(move |_peers| WholeDistributor {
        route,
        dest: Vec::new(),
        _records: std::marker::PhantomData,
    })
}

/// The exchange key of a quality input: for a registered source, its registered site's
/// [`SitePlacement::route`] (the worker that deduplicated its readings, when they carry that site);
/// otherwise [`QualityIn::route`]. A function of the source alone (both variants agree).
fn quality_route(placement: &SitePlacement, info: &SiteInfo, q: &QualityIn) -> u64 {
    match q {
        QualityIn::Seen(s) => match info.device(s.source) {
            Some(reg) => placement.route(reg.site),
            None => q.route(),
        },
        // Rare (refused messages): a string look-up and an intern are fine here.
        QualityIn::Rejected { source, .. } => match info.devices.get(source) {
            Some((site, _, _)) => placement.route(Sym::intern(site)),
            None => q.route(),
        },
    }
}

/// Builds the dataflow on `input`; see the module docs.
pub fn build<'s>(
    input: StreamVec<'s, u64, CoreInput>,
    cfg: &WindowConfig,
    info: &Arc<SiteInfo>,
) -> StreamVec<'s, u64, CoreOutput> {
    let (readings, rejects, _) = split3(input, "Validate", |x, ok, rej, _: &mut Vec<()>| match x {
        CoreInput::Reading(r) => ok.push(r),
        CoreInput::Rejected { source, dataset } => {
            rej.push(QualityIn::Rejected { source, dataset })
        }
    });
    // Registered sites are placed on workers, balanced by registered devices; others hash.
    let placement = SitePlacement::new(info, readings.scope().peers());
    let (qplace, qinfo) = (placement.clone(), info.clone());
    let dedup = timed(
        readings,
        exchange_whole(move |x: &CoreReading| placement.route(x.site)),
        "Dedup",
        DedupOp(DedupCore::new(
            cfg.correction_horizon_ms,
            cfg.retention_ms(),
            info.clone(),
        )),
    );
    // AssignWindow: accepted readings to the windows; every outcome to quality; drops counted.
    let (accepted, seen, dropped) =
        split3(dedup, "AssignWindow", |x, acc, seen, dropped| match x {
            DedupOut::Reading(r) => acc.push(r),
            DedupOut::Seen(s) => {
                let reason = match s.outcome {
                    SeenOutcome::Duplicate => Some("duplicate"),
                    SeenOutcome::TooLate => Some("too_late"),
                    SeenOutcome::Accepted { .. } => None,
                };
                if let Some(reason) = reason {
                    dropped.push(CoreOutput::Dropped {
                        reason: reason.into(),
                        source: s.source.name(),
                    });
                }
                seen.push(QualityIn::Seen(s));
            }
        });
    let aggregates = timed(
        accepted,
        Pipeline,
        "Aggregate",
        AggOp(WindowEngine::new(cfg.clone(), info.clone())),
    );
    // SiteRows: every result goes out; lot and feeder rows also go to the district roll-up.
    let (aggregates, site_rows, _) =
        split3(aggregates, "SiteRows", |x, all, site, _: &mut Vec<()>| {
            if let CoreOutput::Aggregate(a) = &x
                && (a.scope == "lot" || a.scope == "feeder")
            {
                site.push(a.clone());
            }
            all.push(x);
        });
    let districts = timed(
        site_rows,
        Exchange::new(|a: &WindowAggregate| route_hash(&a.district)),
        "RollupDistrict",
        RollupOp(RollupCore::new(cfg.retention_ms())),
    );
    let districts = named_flat_map(districts, "DistrictRows", |a| {
        Some(CoreOutput::Aggregate(a))
    });
    let quality = timed(
        seen.concat(rejects),
        // A registered source's quality goes to its registered site's worker, where dedup ran
        // (its `Seen` records stay on the worker); others by the source's hash. Depends only on
        // the source, so a source's refusals and readings meet on one worker.
        exchange_whole(move |q: &QualityIn| quality_route(&qplace, &qinfo, q)),
        "Quality",
        QualityOp(QualityCore::new(cfg.clone(), info.clone())),
    );
    let quality = named_flat_map(quality, "QualityRows", |q| Some(CoreOutput::Quality(q)));
    aggregates.concat(districts).concat(quality).concat(dropped)
}

/// Runs the dataflow over a finite, pre-stamped input: batch `i` is fed at its watermark time (times
/// non-decreasing), record `j` of it by worker `j % peers`; the input is closed at the end, which flushes
/// every window. Returns all outputs with their times, sorted.
///
/// # Errors
/// timely's start-up error (e.g. a bad cluster address).
pub fn run_finite(
    config: timely::Config,
    batches: Arc<Vec<(u64, Vec<CoreInput>)>>,
    cfg: WindowConfig,
    info: Arc<SiteInfo>,
) -> Result<Vec<(u64, CoreOutput)>, String> {
    let collected: Arc<Mutex<Vec<(u64, CoreOutput)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = collected.clone();
    timely::execute(config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let mut input = InputHandleVec::<u64, CoreInput>::new();
        let probe = ProbeHandle::new();
        let sink = sink.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let out = build(input.to_stream(scope), &cfg, &info);
            emit(out, "Collect", move |t, x| {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push((t, x))
            })
            .probe_with(&probe);
        });
        for (t, batch) in batches.iter() {
            if *t > *input.time() {
                input.advance_to(*t);
            }
            for (j, rec) in batch.iter().enumerate() {
                if j % peers == index {
                    input.send(rec.clone());
                }
            }
            while probe.less_than(input.time()) {
                worker.step();
            }
        }
        input.close();
        while worker.step() {}
    })?;
    let mut v = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
    v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    Ok(v)
}
