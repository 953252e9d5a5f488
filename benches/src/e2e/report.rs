//! Results: statistics, the markdown table, JSON and the SVG chart of ratios to native.

use crate::source::Layout;
use crate::workload::{Sample, Workload, human_bytes};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What was measured of one configuration (one server on one transport, pinned or not).
#[derive(Debug, Clone, Default)]
pub struct ConfigResult {
    /// Name in the tables, e.g. `memfs/blocking` or `bindfs [pinned]`.
    pub name: String,
    /// `native`, `fuselage`, `peer` or `kernel` (kernel overlayfs).
    pub kind: &'static str,
    pub backend: Option<String>,
    pub transport: Option<String>,
    pub passthrough: Option<String>,
    pub pinned: bool,
    /// Set when the server refused to start: its one-line reason.
    pub unavailable: Option<String>,
    pub startup_line: Option<String>,
    pub samples: BTreeMap<Workload, Vec<Sample>>,
    /// Workloads that failed on this configuration (the last error).
    pub errors: BTreeMap<Workload, String>,
    /// VmRSS of the idle server right after mounting, one per repetition.
    pub idle_rss_kib: Vec<u64>,
    /// VmHWM of the server after all workloads, one per repetition.
    pub peak_rss_kib: Vec<u64>,
    /// VmRSS of the idle server's child processes (fuselage's auto-unmount
    /// watchdog), summed, at the same moment as `idle_rss_kib`.
    pub idle_children_rss_kib: Vec<u64>,
    /// Anything odd about how the server ended (non-zero exit, needed a signal).
    pub exit_notes: Vec<String>,
}

/// `transport` of a fuselage configuration mounted without `--transport`: its own choice.
pub const AUTO: &str = "auto";

/// A figure as a speed: itself when larger is better, else its inverse (a time).
fn speed(w: Workload, figure: f64) -> f64 {
    if w.higher_is_better() {
        figure
    } else if figure > 0.0 {
        1.0 / figure
    } else {
        f64::INFINITY
    }
}

/// One default row's median for one workload beside the best peer's and the floor's.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    pub workload: Workload,
    /// The default row.
    pub config: &'a ConfigResult,
    pub median: f64,
    /// The fastest peer for this workload (same pinning) and its median.
    pub peer: Option<(&'a ConfigResult, f64)>,
    /// The floor row compared with and its median.
    pub floor: Option<(&'a ConfigResult, f64)>,
}

impl Comparison<'_> {
    /// How many times faster the default row is than a figure of `other` (below 1: slower).
    pub fn speedup_over(&self, other: f64) -> f64 {
        speed(self.workload, self.median) / speed(self.workload, other)
    }

    fn json(&self) -> Value {
        let side = |o: Option<(&ConfigResult, f64)>| {
            o.map(|(r, m)| {
                json!({
                    "name": r.name,
                    "median": m,
                    "speedup": self.speedup_over(m),
                })
            })
        };
        json!({
            "workload": self.workload.name(),
            "unit": self.workload.unit(),
            "higher_is_better": self.workload.higher_is_better(),
            "config": self.config.name,
            "pinned": self.config.pinned,
            "transport_chosen": self.config.chosen_transport(),
            "median": self.median,
            "best_peer": side(self.peer),
            "floor": side(self.floor),
        })
    }
}

/// Median, min and max of a set of figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

/// Statistics of `values` (None when empty).
pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

impl ConfigResult {
    /// The value of `KEY=value` in fuselage's startup line, e.g. `transport`.
    pub fn startup_word(&self, key: &str) -> Option<&str> {
        let line = self.startup_line.as_deref()?;
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        line[at..].split_whitespace().next()
    }

    /// A default configuration: fuselage mounted without `--transport`.
    pub fn is_default(&self) -> bool {
        self.kind == "fuselage" && self.transport.as_deref() == Some(AUTO)
    }

    /// The transport that served: the one named with `--transport`, or for a default
    /// configuration the one `auto` chose (from the startup line).
    pub fn chosen_transport(&self) -> Option<&str> {
        match self.transport.as_deref() {
            Some(AUTO) => self.startup_word("transport"),
            other => other,
        }
    }

    /// Statistics of a workload's figures.
    pub fn stats(&self, w: Workload) -> Option<Stats> {
        let values: Vec<f64> = self.samples.get(&w)?.iter().map(|s| s.value).collect();
        stats(&values)
    }

    fn median_of(&self, w: Workload, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.samples.get(&w)?.iter().filter_map(f).collect();
        stats(&v).map(|s| s.median)
    }

    /// Median server CPU use during a workload, in percent of one CPU.
    pub fn server_cpu_pct(&self, w: Workload) -> Option<f64> {
        self.median_of(w, |s| Some(s.server_cpu? / s.secs * 100.0))
    }

    /// Median load CPU use during a workload, in percent of one CPU.
    pub fn load_cpu_pct(&self, w: Workload) -> Option<f64> {
        self.median_of(w, |s| Some(s.load_cpu? / s.secs * 100.0))
    }
}

/// Everything one run of the harness measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub command: String,
    pub machine: BTreeMap<String, String>,
    pub source: String,
    /// What the `tar-x` workload extracts (origin, archive path, size).
    pub tar: Option<String>,
    pub layout: Layout,
    pub reps: usize,
    pub workloads: Vec<Workload>,
    pub cold: bool,
    pub results: Vec<ConfigResult>,
}

impl Report {
    /// The native result measured under the same pinning as `r`.
    pub fn native_for(&self, r: &ConfigResult) -> Option<&ConfigResult> {
        self.results
            .iter()
            .find(|n| n.kind == "native" && n.pinned == r.pinned)
    }

    /// Median of `r` over median of native, for workloads that have a native figure.
    pub fn ratio(&self, r: &ConfigResult, w: Workload) -> Option<f64> {
        if w == Workload::Mount {
            return None;
        }
        let native = self.native_for(r)?.stats(w)?.median;
        let own = r.stats(w)?.median;
        (native > 0.0).then_some(own / native)
    }

    /// [`ratio`](Report::ratio) as a speed: inverted for workloads whose figure is a time, so
    /// that above 1 is always faster than native (the chart's bars).
    pub fn speed_ratio(&self, r: &ConfigResult, w: Workload) -> Option<f64> {
        let x = self.ratio(r, w)?;
        if w.higher_is_better() {
            Some(x)
        } else {
            (x > 0.0).then(|| 1.0 / x)
        }
    }

    /// What an overlay or router row is compared with: the fuselage passthrough row of the
    /// same transport, `--passthrough` mode and pinning (the same data set served with
    /// `--source`). Kernel overlayfs is compared with native. None for other rows.
    pub fn reference_for(&self, r: &ConfigResult) -> Option<&ConfigResult> {
        if r.kind == "kernel" {
            return self.native_for(r);
        }
        if r.kind != "fuselage" || !matches!(r.backend.as_deref(), Some("overlay" | "router")) {
            return None;
        }
        self.results.iter().find(|p| {
            p.kind == "fuselage"
                && p.backend.as_deref() == Some("passthrough")
                && p.transport == r.transport
                && p.passthrough == r.passthrough
                && p.pinned == r.pinned
        })
    }

    /// The kernel overlayfs row measured under the same pinning as `r`.
    pub fn kernel_overlay_for(&self, r: &ConfigResult) -> Option<&ConfigResult> {
        self.results
            .iter()
            .find(|k| k.kind == "kernel" && k.pinned == r.pinned)
    }

    /// Median of `r` over median of `reference` (any workload both have).
    pub fn ratio_to(r: &ConfigResult, reference: &ConfigResult, w: Workload) -> Option<f64> {
        let base = reference.stats(w)?.median;
        let own = r.stats(w)?.median;
        (base > 0.0).then_some(own / base)
    }

    /// A table of `rows` (a configuration and what it is compared with): every cell the
    /// median and its ratio to the compared row's median.
    fn ratio_table(
        &self,
        s: &mut String,
        rows: &[(&ConfigResult, &ConfigResult)],
        workloads: &[Workload],
    ) {
        let mut header = String::from("| configuration | compared with |");
        let mut rule = String::from("|---|---|");
        for w in workloads {
            let _ = write!(header, " {} {} |", w.title(&self.layout), w.unit());
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for (r, reference) in rows {
            let _ = write!(s, "| {} | {} |", r.name, reference.name);
            for w in workloads {
                let cell = match (r.stats(*w), r.errors.get(w)) {
                    (Some(st), _) => match Report::ratio_to(r, reference, *w) {
                        Some(x) => format!("{} ×{x:.2}", fmt_figure(st.median)),
                        None => fmt_figure(st.median),
                    },
                    (None, Some(_)) => "failed".into(),
                    (None, None) => "—".into(),
                };
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s);
        }
    }

    /// Every default row against the best peer and the floor, per workload: unpinned rows
    /// first, then pinned ones.
    pub fn comparisons(&self) -> Vec<Comparison<'_>> {
        let mut out = Vec::new();
        let workloads: Vec<Workload> = self
            .measured_workloads()
            .into_iter()
            .filter(|w| !w.overlay_only())
            .collect();
        for pinned in [false, true] {
            for w in &workloads {
                let w = *w;
                let best = |kind: &str, transport: Option<&str>, passthrough: Option<&str>| {
                    self.results
                        .iter()
                        .filter(|r| r.kind == kind && r.pinned == pinned && r.unavailable.is_none())
                        .filter(|r| transport.is_none() || r.chosen_transport() == transport)
                        // A peer of the same kind: kernel passthrough on or off alike
                        // (peers not tagged compare with every default).
                        .filter(|r| {
                            passthrough.is_none()
                                || r.passthrough.is_none()
                                || r.passthrough.as_deref() == passthrough
                        })
                        .filter_map(|r| Some((r, r.stats(w)?.median)))
                        .max_by(|a, b| {
                            let (x, y) = (speed(w, a.1), speed(w, b.1));
                            x.total_cmp(&y)
                        })
                };
                for r in self
                    .results
                    .iter()
                    .filter(|r| r.is_default() && r.pinned == pinned && r.unavailable.is_none())
                {
                    let Some(median) = r.stats(w).map(|s| s.median) else {
                        continue;
                    };
                    // The floor of the transport auto chose; else the fastest floor measured.
                    let floor = best("floor", r.chosen_transport(), None)
                        .or_else(|| best("floor", None, None));
                    out.push(Comparison {
                        workload: w,
                        config: r,
                        median,
                        peer: best("peer", None, r.startup_word("passthrough")),
                        floor,
                    });
                }
            }
        }
        out
    }

    /// The table of [`comparisons`](Report::comparisons) (issue 15). Empty without default rows.
    fn comparison_markdown(&self) -> String {
        let mut s = String::new();
        let all = self.comparisons();
        for pinned in [false, true] {
            let rows: Vec<&Comparison<'_>> =
                all.iter().filter(|c| c.config.pinned == pinned).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(
                s,
                "\n### fuselage's defaults against the best peer and the floor{}\n\n\
                 Every default row beside the best peer (the fastest of bindfs and the `--peer` \
                 rows for that workload, of the same kind: with kernel passthrough for a default \
                 that uses it, without for one that does not, as the peers are tagged with \
                 `passthrough=on|off`) and the floor (a trivial server through fuselage's own \
                 transport: constant attributes, reads copied from a static zero-filled buffer, \
                 written data dropped, created files names and sizes only, passthrough's timeouts; \
                 the one of the transport `auto` chose). `× best peer` and `× floor` are speed \
                 ratios: above 1 fuselage is faster (for times, the other's time over \
                 fuselage's).\n\n\
                 | workload | fuselage default | median | best peer | median | × best peer | floor | median | × floor |\n\
                 |---|---|---:|---|---:|---:|---|---:|---:|",
                if pinned { " (pinned)" } else { "" }
            );
            for c in rows {
                let w = c.workload;
                let other = |o: Option<(&ConfigResult, f64)>| match o {
                    Some((r, m)) => (
                        r.name.clone(),
                        fmt_figure(m),
                        format!("{:.2}", c.speedup_over(m)),
                    ),
                    None => ("—".into(), "—".into(), "—".into()),
                };
                let (pn, pm, px) = other(c.peer);
                let (fname, fm, fx) = other(c.floor);
                let _ = writeln!(
                    s,
                    "| {} {} | {} ({}) | {} | {pn} | {pm} | {px} | {fname} | {fm} | {fx} |",
                    w.title(&self.layout),
                    w.unit(),
                    c.config.name,
                    c.config.chosen_transport().unwrap_or("?"),
                    fmt_figure(c.median),
                );
            }
        }
        s
    }

    /// The overlay and router tables (issue 14): against passthrough, against kernel
    /// overlayfs, and the copy-up cost. Empty when no such row was measured.
    fn overlay_markdown(&self) -> String {
        let mut s = String::new();
        let available = || self.results.iter().filter(|r| r.unavailable.is_none());
        let against_source: Vec<(&ConfigResult, &ConfigResult)> = available()
            .filter_map(|r| Some((r, self.reference_for(r)?)))
            .collect();
        let reads: Vec<Workload> = self
            .measured_workloads()
            .into_iter()
            .filter(|w| !w.overlay_only())
            .collect();
        if !against_source.is_empty() && !reads.is_empty() {
            let _ = writeln!(
                s,
                "\n### Overlay and router: median (× passthrough)\n\n\
                 Every fuselage overlay (`--lower SRC --upper DIR`, DIR fresh on tmpfs) and \
                 router (`--source SRC --route /data=SRC`, workloads under /data) row over the \
                 passthrough row (`--source SRC`) of the same transport and `--passthrough` \
                 mode, in the same run; the reads are of unmodified lower files. Kernel \
                 overlayfs (same lower layer, upper and work on tmpfs) over native.\n"
            );
            self.ratio_table(&mut s, &against_source, &reads);
        }
        let against_kernel: Vec<(&ConfigResult, &ConfigResult)> = available()
            .filter(|r| r.kind == "fuselage" && r.backend.as_deref() == Some("overlay"))
            .filter_map(|r| Some((r, self.kernel_overlay_for(r)?)))
            .collect();
        let mut all = reads.clone();
        all.extend(self.workloads.iter().filter(|w| w.overlay_only()));
        if !against_kernel.is_empty() && !all.is_empty() {
            let _ = writeln!(
                s,
                "\n### Overlay: median (× kernel overlayfs)\n\n\
                 For copy-up (ms per MiB) a ratio above 1 means slower than kernel overlayfs.\n"
            );
            self.ratio_table(&mut s, &against_kernel, &all);
        }
        if self.workloads.contains(&Workload::CopyUp) {
            let rows: Vec<&ConfigResult> = available()
                .filter(|r| r.stats(Workload::CopyUp).is_some())
                .collect();
            if !rows.is_empty() {
                let _ = writeln!(
                    s,
                    "\n### Copy-up: ms per MiB copied up\n\n\
                     The first write (open with O_WRONLY and O_APPEND, write 1 byte, close) to each of \
                     {} lower files of {} ({} in all), over the data copied.\n\n\
                     | configuration | median | min | max | × kernel overlayfs |\n|---|---:|---:|---:|---:|",
                    self.layout.copyup_files,
                    human_bytes(self.layout.copyup_bytes),
                    human_bytes(self.layout.copyup_total()),
                );
                for r in rows {
                    let Some(st) = r.stats(Workload::CopyUp) else {
                        continue;
                    };
                    let _ = writeln!(
                        s,
                        "| {} | {:.2} | {:.2} | {:.2} | {} |",
                        r.name,
                        st.median,
                        st.min,
                        st.max,
                        self.kernel_overlay_for(r)
                            .and_then(|k| Report::ratio_to(r, k, Workload::CopyUp))
                            .map(|x| format!("{x:.2}"))
                            .unwrap_or("—".into()),
                    );
                }
            }
        }
        s
    }

    /// What `auto` chose for each default row (from its startup line).
    fn defaults_note(&self) -> String {
        let mut s = String::new();
        let rows: Vec<&ConfigResult> = self
            .results
            .iter()
            .filter(|r| r.is_default() && r.unavailable.is_none() && !r.pinned)
            .collect();
        if rows.is_empty() {
            return s;
        }
        let _ = writeln!(
            s,
            "\nDefault rows: `fuselage mount` without `--transport` (so `auto` chooses) and \
             without `--passthrough` (`auto`) but where the name says `pt-off`; from the \
             startup line:\n"
        );
        for r in rows {
            let word = |k: &str| r.startup_word(k).unwrap_or("?");
            let _ = writeln!(
                s,
                "- {}: transport={} threads={} passthrough={}",
                r.name,
                word("transport"),
                word("threads"),
                word("passthrough")
            );
        }
        s
    }

    fn measured_workloads(&self) -> Vec<Workload> {
        self.workloads
            .iter()
            .copied()
            .filter(|w| *w != Workload::Mount)
            .collect()
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## fuselage-bench results\n");
        let _ = writeln!(s, "- command: `{}`", self.command);
        for (k, v) in &self.machine {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let _ = writeln!(
            s,
            "- source: {}; big file {}, {} small files of {} in one directory",
            self.source,
            human_bytes(self.layout.big_bytes),
            self.layout.files,
            human_bytes(self.layout.small_bytes as u64)
        );
        if let Some(tar) = &self.tar {
            let _ = writeln!(
                s,
                "- tar-x: `tar -x -f ARCHIVE -C DIR` into a new directory, the tar process's \
                 wall time, no sync (lower is better); archive of {tar}"
            );
        }
        let _ = writeln!(
            s,
            "- {} repetition(s); caches dropped before cold workloads: {}",
            self.reps,
            if self.cold { "yes" } else { "no (not root)" }
        );
        let _ = writeln!(
            s,
            "- figures: median over repetitions; `×0.50` = half of native (the source \
             directory itself) in the same run\n"
        );

        // Summary.
        let _ = writeln!(s, "### Summary: median (× native)\n");
        let mut header = String::from("| configuration |");
        let mut rule = String::from("|---|");
        if self.workloads.contains(&Workload::Mount) {
            header.push_str(" exec→mounted ms | idle RSS MiB |");
            rule.push_str("---:|---:|");
        }
        for w in self.measured_workloads() {
            let _ = write!(header, " {} {} |", w.title(&self.layout), w.unit());
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        for r in self.results.iter().filter(|r| r.unavailable.is_none()) {
            let _ = write!(s, "| {} |", r.name);
            if self.workloads.contains(&Workload::Mount) {
                let mount = r
                    .stats(Workload::Mount)
                    .map(|st| format!("{:.1}", st.median))
                    .unwrap_or_else(|| "—".into());
                let rss = stats(&r.idle_rss_kib.iter().map(|k| *k as f64).collect::<Vec<_>>())
                    .map(|st| format!("{:.1}", st.median / 1024.0))
                    .unwrap_or_else(|| "—".into());
                let _ = write!(s, " {mount} | {rss} |");
            }
            for w in self.measured_workloads() {
                let cell = match (r.stats(w), r.errors.get(&w)) {
                    (Some(st), _) => match self.ratio(r, w) {
                        Some(x) if r.kind != "native" => {
                            format!("{} ×{x:.2}", fmt_figure(st.median))
                        }
                        _ => fmt_figure(st.median),
                    },
                    (None, Some(_)) => "failed".into(),
                    (None, None) => "—".into(),
                };
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s);
        }

        s.push_str(&self.defaults_note());
        s.push_str(&self.comparison_markdown());
        s.push_str(&self.overlay_markdown());

        let unavailable: Vec<&ConfigResult> = self
            .results
            .iter()
            .filter(|r| r.unavailable.is_some())
            .collect();
        if !unavailable.is_empty() {
            let _ = writeln!(s, "\n### Unavailable configurations\n");
            for r in unavailable {
                let _ = writeln!(
                    s,
                    "- {}: unavailable: {}",
                    r.name,
                    r.unavailable.as_deref().unwrap_or("")
                );
            }
        }
        let failures: Vec<String> = self
            .results
            .iter()
            .flat_map(|r| {
                r.errors
                    .iter()
                    .map(move |(w, e)| format!("- {} / {}: {e}", r.name, w.name()))
            })
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(s, "\n### Failed workloads\n");
            for f in failures {
                let _ = writeln!(s, "{f}");
            }
        }
        let notes: Vec<String> = self
            .results
            .iter()
            .flat_map(|r| {
                r.exit_notes
                    .iter()
                    .map(move |n| format!("- {}: {n}", r.name))
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n### Server exits\n");
            for n in notes {
                let _ = writeln!(s, "{n}");
            }
        }

        // Details.
        let _ = writeln!(s, "\n### Details\n");
        let _ = writeln!(
            s,
            "CPU columns: CPU time during the timed part over its wall time, in % of one CPU \
             (server: all its threads; load: the harness and fio).\n"
        );
        for w in &self.workloads {
            let _ = writeln!(s, "#### {} ({})\n", w.title(&self.layout), w.unit());
            if *w == Workload::Mount {
                let _ = writeln!(
                    s,
                    "| configuration | median | min | max | idle VmRSS KiB | + children (watchdog) KiB | peak VmRSS KiB |\n|---|---:|---:|---:|---:|---:|---:|"
                );
            } else {
                let _ = writeln!(
                    s,
                    "| configuration | median | min | max | × native | server CPU % | load CPU % | how |\n|---|---:|---:|---:|---:|---:|---:|---|"
                );
            }
            for r in self.results.iter().filter(|r| r.unavailable.is_none()) {
                let Some(st) = r.stats(*w) else { continue };
                if *w == Workload::Mount {
                    let rss = stats(&r.idle_rss_kib.iter().map(|k| *k as f64).collect::<Vec<_>>());
                    let hwm = stats(&r.peak_rss_kib.iter().map(|k| *k as f64).collect::<Vec<_>>());
                    let kids = stats(
                        &r.idle_children_rss_kib
                            .iter()
                            .map(|k| *k as f64)
                            .collect::<Vec<_>>(),
                    );
                    let _ = writeln!(
                        s,
                        "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                        r.name,
                        st.median,
                        st.min,
                        st.max,
                        rss.map(|x| format!("{:.0}", x.median))
                            .unwrap_or("—".into()),
                        kids.map(|x| format!("{:.0}", x.median))
                            .unwrap_or("—".into()),
                        hwm.map(|x| format!("{:.0}", x.max)).unwrap_or("—".into()),
                    );
                } else {
                    let pct = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or("—".into());
                    let engine = r
                        .samples
                        .get(w)
                        .and_then(|v| v.first())
                        .map(|s| s.engine.clone())
                        .unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        r.name,
                        fmt_figure(st.median),
                        fmt_figure(st.min),
                        fmt_figure(st.max),
                        self.ratio(r, *w)
                            .map(|x| format!("{x:.3}"))
                            .unwrap_or("—".into()),
                        pct(r.server_cpu_pct(*w)),
                        pct(r.load_cpu_pct(*w)),
                        engine
                    );
                }
            }
            let _ = writeln!(s);
        }
        s
    }

    /// The JSON document.
    pub fn json(&self) -> Value {
        let results: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                let mut workloads = serde_json::Map::new();
                for w in &self.workloads {
                    let samples: Vec<Value> = r
                        .samples
                        .get(w)
                        .map(|v| {
                            v.iter()
                                .map(|s| {
                                    json!({
                                        "secs": s.secs,
                                        "value": s.value,
                                        "server_cpu_secs": s.server_cpu,
                                        "load_cpu_secs": s.load_cpu,
                                        "engine": s.engine,
                                        "cold": s.cold,
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let st = r.stats(*w);
                    workloads.insert(
                        w.name().to_string(),
                        json!({
                            "unit": w.unit(),
                            "higher_is_better": w.higher_is_better(),
                            "median": st.map(|s| s.median),
                            "min": st.map(|s| s.min),
                            "max": st.map(|s| s.max),
                            "ratio_to_native": self.ratio(r, *w),
                            "server_cpu_pct": r.server_cpu_pct(*w),
                            "load_cpu_pct": r.load_cpu_pct(*w),
                            "error": r.errors.get(w),
                            "samples": samples,
                        }),
                    );
                }
                json!({
                    "name": r.name,
                    "kind": r.kind,
                    "backend": r.backend,
                    "transport": r.transport,
                    "transport_chosen": r.chosen_transport(),
                    "passthrough": r.passthrough,
                    "pinned": r.pinned,
                    "available": r.unavailable.is_none(),
                    "unavailable": r.unavailable.as_ref().map(|e| format!("unavailable: {e}")),
                    "startup_line": r.startup_line,
                    "idle_rss_kib": r.idle_rss_kib,
                    "peak_rss_kib": r.peak_rss_kib,
                    "idle_children_rss_kib": r.idle_children_rss_kib,
                    "exit_notes": r.exit_notes,
                    "workloads": workloads,
                })
            })
            .collect();
        json!({
            "tool": "fuselage-bench",
            "command": self.command,
            "machine": self.machine,
            "source": self.source,
            "layout": {
                "big_bytes": self.layout.big_bytes,
                "files": self.layout.files,
                "small_bytes": self.layout.small_bytes,
                "copyup_files": self.layout.copyup_files,
                "copyup_bytes": self.layout.copyup_bytes,
                "tar_entries": self.layout.tar_entries,
                "tar_bytes": self.layout.tar_bytes,
            },
            "tar_archive": self.tar,
            "reps": self.reps,
            "caches_dropped": self.cold,
            "results": results,
            "defaults_against_best_peer_and_floor":
                self.comparisons().iter().map(Comparison::json).collect::<Vec<_>>(),
        })
    }

    /// Reads back what [`json`](Report::json) wrote, to re-render the tables and the chart.
    pub fn from_json(v: &Value) -> Result<Report, String> {
        let str_of = |v: &Value| v.as_str().map(str::to_string);
        let layout = &v["layout"];
        let mut workloads: Vec<Workload> = Vec::new();
        let mut results = Vec::new();
        for r in v["results"].as_array().ok_or("no results array")? {
            let kind = match r["kind"].as_str() {
                Some("native") => "native",
                Some("fuselage") => "fuselage",
                Some("kernel") => "kernel",
                Some("floor") => "floor",
                _ => "peer",
            };
            let kib = |key: &str| -> Vec<u64> {
                r[key]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default()
            };
            let mut res = ConfigResult {
                name: str_of(&r["name"]).unwrap_or_default(),
                kind,
                backend: str_of(&r["backend"]),
                transport: str_of(&r["transport"]),
                passthrough: str_of(&r["passthrough"]),
                pinned: r["pinned"].as_bool().unwrap_or(false),
                unavailable: str_of(&r["unavailable"])
                    .map(|u| u.trim_start_matches("unavailable: ").to_string()),
                startup_line: str_of(&r["startup_line"]),
                idle_rss_kib: kib("idle_rss_kib"),
                peak_rss_kib: kib("peak_rss_kib"),
                idle_children_rss_kib: kib("idle_children_rss_kib"),
                exit_notes: r["exit_notes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(str_of).collect())
                    .unwrap_or_default(),
                ..Default::default()
            };
            if let Some(map) = r["workloads"].as_object() {
                for (name, w) in map {
                    let Some(wl) = Workload::from_name(name) else {
                        continue;
                    };
                    if !workloads.contains(&wl) {
                        workloads.push(wl);
                    }
                    if let Some(e) = str_of(&w["error"]) {
                        res.errors.insert(wl, e);
                    }
                    let samples: Vec<Sample> = w["samples"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|s| Sample {
                                    secs: s["secs"].as_f64().unwrap_or(0.0),
                                    value: s["value"].as_f64().unwrap_or(0.0),
                                    server_cpu: s["server_cpu_secs"].as_f64(),
                                    load_cpu: s["load_cpu_secs"].as_f64(),
                                    engine: str_of(&s["engine"]).unwrap_or_default(),
                                    cold: s["cold"].as_bool().unwrap_or(false),
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if !samples.is_empty() {
                        res.samples.insert(wl, samples);
                    }
                }
            }
            results.push(res);
        }
        workloads.sort();
        Ok(Report {
            command: str_of(&v["command"]).unwrap_or_default(),
            machine: v["machine"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, x)| Some((k.clone(), x.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            source: str_of(&v["source"]).unwrap_or_default(),
            layout: Layout {
                big_bytes: layout["big_bytes"].as_u64().unwrap_or(0),
                files: layout["files"].as_u64().unwrap_or(0) as usize,
                small_bytes: layout["small_bytes"].as_u64().unwrap_or(0) as usize,
                copyup_files: layout["copyup_files"].as_u64().unwrap_or(0) as usize,
                copyup_bytes: layout["copyup_bytes"].as_u64().unwrap_or(0),
                tar_entries: layout["tar_entries"].as_u64().unwrap_or(0),
                tar_bytes: layout["tar_bytes"].as_u64().unwrap_or(0),
            },
            tar: str_of(&v["tar_archive"]),
            reps: v["reps"].as_u64().unwrap_or(1) as usize,
            workloads,
            cold: v["caches_dropped"].as_bool().unwrap_or(false),
            results,
        })
    }

    /// A horizontal bar chart of the median ratios to native, one group per workload.
    pub fn svg(&self) -> String {
        // One colour per server; its pinned twin follows it, lighter.
        let base = |r: &ConfigResult| r.name.trim_end_matches(" [pinned]").to_string();
        let mut bases: Vec<String> = Vec::new();
        for r in &self.results {
            if r.kind != "native" && r.unavailable.is_none() && !bases.contains(&base(r)) {
                bases.push(base(r));
            }
        }
        let mut configs: Vec<&ConfigResult> = self
            .results
            .iter()
            .filter(|r| r.kind != "native" && r.unavailable.is_none())
            .collect();
        configs.sort_by_key(|r| (bases.iter().position(|b| *b == base(r)), r.pinned));
        let colour_of = |r: &ConfigResult| bases.iter().position(|b| *b == base(r)).unwrap_or(0);
        // Copy-up has no native figure to compare with.
        let workloads: Vec<Workload> = self
            .measured_workloads()
            .into_iter()
            .filter(|w| !w.overlay_only())
            .collect();
        let palette = [
            "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
            "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
        ];
        let max_ratio = configs
            .iter()
            .flat_map(|r| workloads.iter().filter_map(|w| self.speed_ratio(r, *w)))
            .fold(1.0f64, f64::max)
            * 1.08;
        let (left, right, bar, gap, top) = (190.0, 80.0, 11.0, 18.0, 40.0);
        let legend_rows = bases.len().div_ceil(3) as f64 + 1.0;
        let plot_w = 620.0;
        let width = left + plot_w + right;
        let group_h = configs.len().max(1) as f64 * (bar + 2.0) + gap;
        let legend_top = top + workloads.len() as f64 * group_h + 10.0;
        let height = legend_top + legend_rows * 18.0 + 20.0;
        let x = |ratio: f64| left + ratio / max_ratio * plot_w;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"##
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="{left}" y="20" font-size="14" font-weight="bold">Speed relative to native (median of {} run(s); 1.0 = native)</text>"##,
            self.reps
        );
        // Grid.
        let step = if max_ratio > 4.0 {
            1.0
        } else if max_ratio > 2.0 {
            0.5
        } else {
            0.25
        };
        let mut g = 0.0;
        while g <= max_ratio {
            let gx = x(g);
            let colour = if (g - 1.0).abs() < 1e-9 {
                "#333"
            } else {
                "#ddd"
            };
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{:.1}" stroke="{colour}"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{g:.2}</text>"##,
                legend_top - 14.0,
                top - 4.0
            );
            g += step;
        }
        for (wi, w) in workloads.iter().enumerate() {
            let gy = top + wi as f64 * group_h;
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="bold">{}</text>"##,
                left - 8.0,
                gy + 12.0,
                xml_escape(&if w.higher_is_better() {
                    w.title(&self.layout)
                } else {
                    format!("{} (native time ÷ time)", w.title(&self.layout))
                })
            );
            for (ci, r) in configs.iter().enumerate() {
                let y = gy + ci as f64 * (bar + 2.0);
                let colour = palette[colour_of(r) % palette.len()];
                let opacity = if r.pinned { 0.45 } else { 1.0 };
                match self.speed_ratio(r, *w) {
                    Some(ratio) => {
                        let _ = writeln!(
                            s,
                            r##"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{bar}" fill="{colour}" fill-opacity="{opacity}"><title>{}: {ratio:.3}</title></rect><text x="{:.1}" y="{:.1}" fill="#222">{ratio:.2}</text>"##,
                            (x(ratio) - left).max(0.5),
                            xml_escape(&r.name),
                            x(ratio) + 3.0,
                            y + bar - 2.0
                        );
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            r##"<text x="{:.1}" y="{:.1}" fill="#999">{}: n/a</text>"##,
                            left + 3.0,
                            y + bar - 3.0,
                            xml_escape(&r.name)
                        );
                    }
                }
            }
        }
        for (ci, name) in bases.iter().enumerate() {
            let lx = 20.0 + (ci % 3) as f64 * 290.0;
            let ly = legend_top + (ci / 3) as f64 * 18.0;
            let _ = writeln!(
                s,
                r##"<rect x="{lx}" y="{ly:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                palette[ci % palette.len()],
                lx + 16.0,
                ly + 10.0,
                xml_escape(name)
            );
        }
        if configs.iter().any(|r| r.pinned) {
            let ly = legend_top + bases.len().div_ceil(3) as f64 * 18.0;
            let _ = writeln!(
                s,
                r##"<text x="20" y="{:.1}" fill="#555">lighter bar: the same server with load and server pinned to separate CPUs ([pinned])</text>"##,
                ly + 10.0
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// 3 significant digits, with thousands separators for large figures.
pub fn fmt_figure(v: f64) -> String {
    if v >= 1000.0 {
        let n = v.round() as u64;
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 || v == 0.0 {
        format!("{v:.2}")
    } else if v >= 0.1 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(v: f64) -> Sample {
        Sample {
            secs: 1.0,
            value: v,
            server_cpu: Some(0.5),
            load_cpu: Some(0.25),
            engine: "test".into(),
            cold: true,
        }
    }

    fn report() -> Report {
        let mut native = ConfigResult {
            name: "native".into(),
            kind: "native",
            ..Default::default()
        };
        native.samples.insert(
            Workload::SeqRead,
            vec![sample(100.0), sample(300.0), sample(200.0)],
        );
        let mut memfs = ConfigResult {
            name: "memfs/blocking".into(),
            kind: "fuselage",
            ..Default::default()
        };
        memfs.samples.insert(Workload::SeqRead, vec![sample(50.0)]);
        memfs.samples.insert(Workload::Mount, vec![sample(3.0)]);
        memfs.idle_rss_kib.push(2048);
        let down = ConfigResult {
            name: "memfs/uring".into(),
            kind: "fuselage",
            unavailable: Some("--transport uring: not built".into()),
            ..Default::default()
        };
        Report {
            command: "fuselage-bench --test".into(),
            machine: BTreeMap::new(),
            source: "tmpfs".into(),
            layout: Layout {
                big_bytes: 1 << 20,
                files: 10,
                small_bytes: 4096,
                copyup_files: 16,
                copyup_bytes: 65536,
                tar_entries: 0,
                tar_bytes: 0,
            },
            tar: None,
            reps: 3,
            workloads: vec![Workload::Mount, Workload::SeqRead],
            cold: true,
            results: vec![native, memfs, down],
        }
    }

    #[test]
    fn median_min_max() {
        let s = stats(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
        assert!(stats(&[]).is_none());
    }

    #[test]
    fn ratios_and_outputs() {
        let r = report();
        assert_eq!(r.ratio(&r.results[1], Workload::SeqRead), Some(0.25));
        assert_eq!(r.ratio(&r.results[1], Workload::Mount), None);
        let md = r.markdown();
        assert!(md.contains("50.0 ×0.25"), "{md}");
        assert!(
            md.contains("memfs/uring: unavailable: --transport uring: not built"),
            "{md}"
        );
        let j = r.json();
        assert_eq!(
            j["results"][1]["workloads"]["seqread"]["ratio_to_native"],
            0.25
        );
        assert_eq!(j["results"][2]["available"], false);
        let svg = r.svg();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        let back = Report::from_json(&j).unwrap();
        assert_eq!(back.markdown(), md);
        assert!(svg.contains("memfs/blocking: 0.250"));
    }

    #[test]
    fn overlay_compared_with_passthrough_and_kernel() {
        let row = |name: &str, kind: &'static str, backend: Option<&str>, pt: &str, v: f64| {
            let mut r = ConfigResult {
                name: name.into(),
                kind,
                backend: backend.map(str::to_string),
                transport: backend.map(|_| "blocking".to_string()),
                passthrough: backend.map(|_| pt.to_string()),
                ..Default::default()
            };
            r.samples.insert(Workload::SeqRead, vec![sample(v)]);
            r.samples.insert(Workload::CopyUp, vec![sample(v / 100.0)]);
            r
        };
        let mut r = report();
        r.workloads.push(Workload::CopyUp);
        r.results = vec![
            row("native", "native", None, "", 400.0),
            row(
                "passthrough/blocking/pt-on",
                "fuselage",
                Some("passthrough"),
                "on",
                300.0,
            ),
            row(
                "passthrough/blocking/pt-off",
                "fuselage",
                Some("passthrough"),
                "off",
                200.0,
            ),
            row(
                "overlay/blocking/pt-off",
                "fuselage",
                Some("overlay"),
                "off",
                180.0,
            ),
            row("kernel-overlayfs", "kernel", Some("overlay"), "", 360.0),
        ];
        let overlay = &r.results[3];
        assert_eq!(
            r.reference_for(overlay).map(|p| p.name.as_str()),
            Some("passthrough/blocking/pt-off")
        );
        assert_eq!(
            r.reference_for(&r.results[4]).map(|p| p.name.as_str()),
            Some("native")
        );
        assert!(r.reference_for(&r.results[1]).is_none());
        let md = r.markdown();
        assert!(
            md.contains("| overlay/blocking/pt-off | passthrough/blocking/pt-off | 180 ×0.90 |"),
            "{md}"
        );
        assert!(
            md.contains("| overlay/blocking/pt-off | kernel-overlayfs | 180 ×0.50 | 1.80 ×0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| overlay/blocking/pt-off | 1.80 | 1.80 | 1.80 | 0.50 |"),
            "{md}"
        );
        let back = Report::from_json(&r.json()).unwrap();
        assert_eq!(back.markdown(), md);
    }

    #[test]
    fn default_rows_name_the_transport_auto_chose() {
        let mut r = ConfigResult {
            name: "default/passthrough".into(),
            kind: "fuselage",
            transport: Some(AUTO.into()),
            startup_line: Some(
                "fuselage: mounted /m backend=passthrough transport=uring threads=2 passthrough=on"
                    .into(),
            ),
            ..Default::default()
        };
        assert!(r.is_default());
        assert_eq!(r.chosen_transport(), Some("uring"));
        assert_eq!(r.startup_word("passthrough"), Some("on"));
        r.transport = Some("blocking".into());
        assert!(!r.is_default());
        assert_eq!(r.chosen_transport(), Some("blocking"));
    }

    #[test]
    fn defaults_against_the_best_peer_and_the_floor() {
        let row = |name: &str, kind: &'static str, transport: Option<&str>, v: f64, t: f64| {
            let mut r = ConfigResult {
                name: name.into(),
                kind,
                transport: transport.map(str::to_string),
                startup_line: Some("fuselage: mounted /m backend=x transport=uring".into()),
                ..Default::default()
            };
            r.samples.insert(Workload::SeqRead, vec![sample(v)]);
            r.samples.insert(Workload::TarX, vec![sample(t)]);
            r
        };
        let mut r = report();
        r.workloads = vec![Workload::SeqRead, Workload::TarX];
        r.results = vec![
            row("native", "native", None, 400.0, 1.0),
            row("default/passthrough", "fuselage", Some(AUTO), 300.0, 2.0),
            row(
                "passthrough/uring/pt-on",
                "fuselage",
                Some("uring"),
                310.0,
                2.0,
            ),
            row("bindfs", "peer", None, 100.0, 3.0),
            row("hp", "peer", None, 200.0, 4.0),
            row("floor/blocking", "floor", Some("blocking"), 900.0, 0.0),
            row("floor/uring", "floor", Some("uring"), 600.0, 0.0),
        ];
        // tar-x has no floor figure.
        r.results[5].samples.remove(&Workload::TarX);
        r.results[6].samples.remove(&Workload::TarX);
        let c = r.comparisons();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].peer.map(|p| p.0.name.as_str()), Some("hp"));
        assert_eq!(c[0].floor.map(|p| p.0.name.as_str()), Some("floor/uring"));
        assert_eq!(c[0].speedup_over(200.0), 1.5);
        // A time: the fastest peer has the smallest, and 3 s over 2 s is 1.5 times faster.
        assert_eq!(c[1].peer.map(|p| p.0.name.as_str()), Some("bindfs"));
        assert_eq!(c[1].speedup_over(3.0), 1.5);
        assert!(c[1].floor.is_none());
        let md = r.markdown();
        assert!(
            md.contains(
                "| default/passthrough (uring) | 300 | hp | 200 | 1.50 | floor/uring | 600 | 0.50 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| default/passthrough (uring) | 2.00 | bindfs | 3.00 | 1.50 | — | — | — |"
            ),
            "{md}"
        );
        let j = r.json();
        assert_eq!(
            j["defaults_against_best_peer_and_floor"][0]["best_peer"]["speedup"],
            1.5
        );
        let back = Report::from_json(&j).unwrap();
        assert_eq!(back.markdown(), md);

        // Tagged peers: a default without kernel passthrough is compared only with
        // peers without it, and the tag survives the JSON.
        r.results[1].startup_line =
            Some("fuselage: mounted /m backend=x transport=uring passthrough=off".into());
        r.results[3].passthrough = Some("off".into());
        r.results[4].passthrough = Some("on".into());
        let c = r.comparisons();
        assert_eq!(c[0].peer.map(|p| p.0.name.as_str()), Some("bindfs"));
        r.results[1].startup_line =
            Some("fuselage: mounted /m backend=x transport=uring passthrough=on".into());
        let back = Report::from_json(&r.json()).unwrap();
        let c = back.comparisons();
        assert_eq!(c[0].peer.map(|p| p.0.name.as_str()), Some("hp"));
        assert_eq!(c[1].peer.map(|p| p.0.name.as_str()), Some("hp"));
    }

    #[test]
    fn figures() {
        assert_eq!(fmt_figure(1234567.0), "1,234,567");
        assert_eq!(fmt_figure(123.4), "123");
        assert_eq!(fmt_figure(1.234), "1.23");
        assert_eq!(fmt_figure(0.1234), "0.123");
        assert_eq!(fmt_figure(0.01234), "0.0123");
    }
}
