//! The suite record as one self-contained HTML page (tables only, nothing fetched).

use std::fmt::Write as _;

use super::compare::Row;
use super::record::{fmt_num, Record};
use crate::html::escape;

pub fn render(record: &Record, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ringcast suite {date}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .bad{{color:#b00;font-weight:bold}}.na{{color:#777}}code{{font-size:85%;word-break:break-all}}</style></head><body>\
         <h1>ringcast benchmark suite, {date}{quick}</h1>\
         <p>{cores} cores, {cpu}, kernel {kernel}; harness {version}; {secs:.0} s in all.</p><p>{rule}.</p>",
        date = escape(&record.date),
        quick = if record.quick { " (quick)" } else { "" },
        cores = record.machine.cores,
        cpu = escape(&record.machine.cpu_model),
        kernel = escape(&record.machine.kernel),
        version = escape(&record.version),
        secs = record.elapsed_secs,
        rule = escape(&record.noise_rule),
    );
    match &record.baseline {
        Some(path) => {
            let _ = write!(out, "<h2>Compared with {}</h2>", escape(path));
            out.push_str("<table><tr><th>scenario</th><th>figure</th><th>baseline</th><th>now</th><th>change</th><th>noise</th><th>verdict</th></tr>");
            for r in rows {
                let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "-".into());
                let pct = |v: Option<f64>| v.map(|v| format!("{:+.1} %", v * 100.0)).unwrap_or_else(|| "-".into());
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>",
                    escape(&r.scenario),
                    escape(&r.figure),
                    num(r.baseline),
                    num(r.current),
                    pct(r.change),
                    r.noise.map(|n| format!("{:.1} %", n * 100.0)).unwrap_or_else(|| "-".into()),
                    if r.regression { " class=\"bad\"" } else { "" },
                    escape(&r.verdict)
                );
            }
            out.push_str("</table>");
        }
        None => out.push_str("<p>No earlier record to compare with.</p>"),
    }
    for s in &record.scenarios {
        let _ =
            write!(out, "<h2>{}</h2><p>{} <b>[{}]</b></p>", escape(&s.name), escape(&s.description), escape(&s.status));
        if let Some(reason) = &s.reason {
            let _ = write!(out, "<p class=\"na\">{}</p>", escape(reason));
        }
        if !s.figures.is_empty() {
            out.push_str(
                "<table><tr><th>figure</th><th>min</th><th>median</th><th>max</th><th>spread</th><th>n</th></tr>",
            );
            for (name, v) in &s.figures {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1} %</td><td>{}</td></tr>",
                    escape(name),
                    fmt_num(v.min),
                    fmt_num(v.median),
                    fmt_num(v.max),
                    v.rel_spread * 100.0,
                    v.n
                );
            }
            out.push_str("</table>");
        }
        for run in &s.runs {
            let _ = write!(out, "<p><code>{}</code>", escape(&run.command));
            if let Some(err) = &run.error {
                let _ = write!(out, " <span class=\"bad\">{}</span>", escape(err));
            }
            for note in &run.notes {
                let _ = write!(out, " <span class=\"bad\">{}</span>", escape(note));
            }
            out.push_str("</p>");
        }
    }
    out.push_str("</body></html>\n");
    out
}
