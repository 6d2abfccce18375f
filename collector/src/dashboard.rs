//! The dashboard: server-rendered HTML with inline SVG, no script, no
//! external resource. [`gather`] reads the counts; [`render`] is pure and
//! every count it prints went through [`crate::suppress`] (as an element of class `count`, which the browser test checks) and every
//! text through [`esc`].

use crate::stats::{self, FieldInfo, WeekCounts};
use crate::storage::{Store, StoreError};
use crate::suppress::{Cells, Shown, OTHER};
use crate::AppState;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Weeks shown in trends.
pub const MAX_WEEKS: usize = 52;

pub struct ProductData {
    pub name: String,
    /// Ascending; the last may be the current (incomplete) week.
    pub weeks: Vec<WeekCounts>,
    pub catalog: Vec<FieldInfo>,
}

pub struct DashboardData {
    pub current_week: String,
    /// The newest week shown (the current one, or for a public reader the
    /// last complete one).
    pub newest_week: String,
    pub products: Vec<ProductData>,
    pub quarantine: Vec<(String, i64)>,
    pub rejected: Vec<(&'static str, u64)>,
    pub public: bool,
}

pub async fn gather<S: Store>(state: &AppState<S>) -> Result<DashboardData, StoreError> {
    let current = crate::api::current_week(state).to_string();
    let newest = crate::api::newest_shown_week(state).to_string();
    let schemas = state.schemas();
    let mut weeks = state.store.data_weeks().await?;
    weeks.retain(|w| *w <= newest);
    let skip = weeks.len().saturating_sub(MAX_WEEKS);
    let weeks = &weeks[skip..];
    // Weeks not rolled up are scanned once, for the product list and all
    // products' counts.
    let rolled: BTreeSet<String> = state.store.rolled_up_weeks().await?.into_iter().collect();
    let mut raw = std::collections::HashMap::new();
    let mut names: BTreeSet<String> = state.store.aggregate_products().await?.into_iter().collect();
    for w in weeks.iter().filter(|w| !rolled.contains(*w)) {
        let columns = state.store.week_columns(w).await?;
        names.extend(columns.by.keys().map(|(_, p)| p.clone()));
        raw.insert(w.clone(), columns);
    }
    let mut products = vec![];
    for name in names {
        let mut counts = vec![];
        let mut ids = BTreeSet::new();
        for w in weeks {
            let c = match raw.get(w) {
                Some(columns) => stats::counts_from_columns(columns, &schemas, &name, w),
                None => stats::week_counts(&state.store, &schemas, &name, w).await?,
            };
            ids.extend(c.schema_ids.iter().copied());
            counts.push(c);
        }
        if counts.iter().all(|c| c.reports == 0) {
            continue;
        }
        let catalog = stats::catalog(&schemas, &ids);
        products.push(ProductData { name, weeks: counts, catalog });
    }
    let (quarantine, rejected) = if state.options.public {
        (vec![], vec![])
    } else {
        let rejected = optin_telemetry::validate::Reject::ALL
            .iter()
            .map(|r| (r.name(), state.metrics.rejected(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        (state.store.quarantine_summary().await?, rejected)
    };
    Ok(DashboardData { current_week: current, newest_week: newest, products, quarantine, rejected, public: state.options.public })
}

/// HTML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn t(lang: &str, key: &str) -> &'static str {
    let de = lang == "de";
    match key {
        "title" => if de { "Nutzungsstatistik" } else { "Usage statistics" },
        "k" => if de { "Zahlen unter k werden als „<k“ gezeigt und unter „other“ zusammengefasst; k =" } else { "Counts below k are shown as \"<k\" and merged into \"other\"; k =" },
        "current" => if de { "aktuelle Woche (unvollständig)" } else { "current week (incomplete)" },
        "public_weeks" => if de { "nur vollständige Wochen, bis" } else { "complete weeks only, up to" },
        "reports" => if de { "Berichte pro Woche" } else { "Reports per week" },
        "reports_expl" => if de {
            "Jede zustimmende, laufende Installation sendet höchstens einen Bericht pro 7-Tage-Abschnitt, zu einem zufälligen Zeitpunkt. Die Berichte einer Woche schätzen daher die Zahl der zustimmenden aktiven Installationen; da ein Abschnitt über eine Wochengrenze reichen kann, schwankt eine einzelne Woche um einige Prozent. Die laufende Woche ist noch unvollständig."
        } else {
            "Every consenting, running installation sends at most one report per 7-day slot, at a random moment in it. A week's reports therefore estimate the consenting active installations; as a slot can straddle a week boundary, single weeks fluctuate by a few percent. The current week is still incomplete."
        },
        "latest" => if de { "Verteilung in der letzten vollständigen Woche" } else { "Distribution in the latest complete week" },
        "trends" => if de { "Verlauf über die Wochen (Anteile)" } else { "Trends over the weeks (shares)" },
        "adoption" => if de { "Verbreitung der Produktversionen" } else { "Product version adoption" },
        "means" => if de { "Durchschnitt mit 95-%-Intervall" } else { "Average with 95 % interval" },
        "merged" => if de {
            "Grau („other“): zusammengefasste Werte. Ist ein Wert kleiner als k und bleibt sonst nichts Kleines zum Zusammenfassen, wird auch der größte Wert zusammengefasst – sonst ließe sich der kleine durch Subtraktion errechnen."
        } else {
            "Grey (\"other\"): merged values. When one value is below k and nothing else small is left to merge it with, even the largest is merged — otherwise the small one could be computed by subtraction."
        },
        "alerts" => if de { "Hinweise" } else { "Alerts" },
        "quarantine" => if de { "Berichte zu nicht registrierten Schemas (Quarantäne)" } else { "Reports for unregistered schemas (quarantine)" },
        "rejected" => if de { "Abgewiesene Berichte seit dem Start, nach Grund" } else { "Rejected reports since start, by reason" },
        "none" => if de { "keine" } else { "none" },
        "nodata" => if de { "Noch keine Daten." } else { "No data yet." },
        "of" => if de { "Berichte" } else { "reports" },
        "nomean" => if de {
            "kein Durchschnitt: zu wenige Berichte, oder er verriete einzelne Werte"
        } else {
            "no average: too few reports, or it would single out a few values"
        },
        "week" => if de { "Woche" } else { "week" },
        _ => "",
    }
}

const PALETTE: [&str; 10] = ["#2f6fbf", "#e2873b", "#3c9b5a", "#c2464b", "#8a63b8", "#1f9aa6", "#b58a2a", "#d46fa8", "#5d7a8c", "#7f9f3a"];
const OTHER_COLOR: &str = "#b9bec6";

/// A count as printed: a number, or "<k".
fn count(s: Shown, k: i64) -> String {
    match s {
        Shown::Count(n) => format!("<data class=\"count\" value=\"{n}\">{}</data>", group(n)),
        Shown::Small => format!("<data class=\"count\" value=\"\">&lt;{}</data>", k.max(1)),
    }
}

/// The same inside SVG text (where HTML elements do not render).
fn count_svg(s: Shown, k: i64) -> String {
    match s {
        Shown::Count(n) => format!("<tspan class=\"count\">{}</tspan>", group(n)),
        Shown::Small => format!("<tspan class=\"count\">&lt;{}</tspan>", k.max(1)),
    }
}

/// 1234567 -> "1,234,567".
fn group(n: i64) -> String {
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn fmt_f(x: f64) -> String {
    if x >= 100.0 {
        group(x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

pub const CSS: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:0;background:#f4f6f9;color:#1d2430}
header{background:#1d2f4f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:6px 0 0;color:#c9d4e6;font-size:13px}main{padding:10px 28px 30px}
h2{font-size:19px;margin:22px 0 10px}h3{font-size:15px;margin:0 0 6px}
section.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:14px 18px;margin:0 0 16px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.grid>div{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:12px 14px}
p.expl,p.desc{font-size:13px;color:#55606f;margin:4px 0 8px;line-height:1.4}
code{font-size:12px;background:#eef1f5;padding:1px 4px;border-radius:3px}
svg{display:block;max-width:100%;height:auto}svg text{font-size:11px;fill:#3a4350}
svg text.v{font-size:11px;fill:#1d2430}svg .axis{stroke:#d5dae1}
ul.legend{list-style:none;padding:0;margin:6px 0 0;font-size:12px;display:flex;flex-wrap:wrap;gap:4px 12px}
ul.legend svg{display:inline;vertical-align:middle}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px 3px 0;text-align:left}
.ok{color:#3c9b5a}.warn{color:#c2464b}
";

pub fn render(d: &DashboardData, lang: &str, k: i64) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/dashboard.css\"></head><body>\
         <header><h1>{}</h1><p>{} {} · {} {}</p></header><main>",
        t(lang, "title"),
        t(lang, "title"),
        esc(t(lang, "k")),
        k.max(1),
        t(lang, if d.public { "public_weeks" } else { "current" }),
        esc(if d.public { &d.newest_week } else { &d.current_week })
    );
    if d.products.is_empty() {
        let _ = write!(h, "<section class=\"card\"><p>{}</p></section>", t(lang, "nodata"));
    }
    for p in &d.products {
        product(&mut h, p, &d.current_week, lang, k);
    }
    if !d.public {
        alerts(&mut h, d, lang, k);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn product(h: &mut String, p: &ProductData, current: &str, lang: &str, k: i64) {
    let _ = write!(h, "<h2>{}</h2>", esc(&p.name));
    // Reports per week.
    let _ = write!(h, "<section class=\"card\"><h3>{}</h3><p class=\"expl\">{}</p>", t(lang, "reports"), esc(t(lang, "reports_expl")));
    h.push_str(&reports_chart(&p.weeks, current, k));
    h.push_str("</section>");

    // Latest complete week.
    let latest = p.weeks.iter().rev().find(|w| w.week.as_str() < current).or(p.weeks.last());
    if let Some(w) = latest {
        let _ = write!(
            h,
            "<h2>{} <small>({} {}, {} {})</small></h2><div class=\"grid\">",
            t(lang, "latest"),
            t(lang, "week"),
            esc(&w.week),
            count(Shown::of(w.reports, k), k),
            t(lang, "of")
        );
        for f in &p.catalog {
            let empty = Default::default();
            let cells = f.suppress(w.fields.get(&f.name).unwrap_or(&empty), w.reports, k);
            let _ = write!(h, "<div><h3>{}</h3><p class=\"desc\"><code>{}</code> {}</p>", esc(&f.describe(lang)), esc(&f.name), kind_note(f, lang));
            h.push_str(&bars(&cells, Shown::of(w.reports, k), k));
            h.push_str("</div>");
        }
        h.push_str("</div>");
    }

    // Means of rounded counts.
    let rounded: Vec<&FieldInfo> = p.catalog.iter().filter(|f| f.rounded).collect();
    if !rounded.is_empty() {
        let _ = write!(h, "<h2>{}</h2><div class=\"grid\">", t(lang, "means"));
        for f in rounded {
            let _ = write!(h, "<div><h3>{}</h3><p class=\"desc\"><code>{}</code></p>", esc(&f.describe(lang)), esc(&f.name));
            h.push_str(&mean_chart(&p.weeks, f, current, lang, k));
            h.push_str("</div>");
        }
        h.push_str("</div>");
    }

    // Version adoption, then every field's trend.
    if let Some(f) = p.catalog.iter().find(|f| f.name == "product_version") {
        let _ = write!(h, "<h2>{}</h2><section class=\"card\"><p class=\"expl\">{}</p>", t(lang, "adoption"), esc(t(lang, "merged")));
        h.push_str(&stacked(&p.weeks, f, current, k, 900));
        h.push_str("</section>");
    }
    let _ = write!(h, "<h2>{}</h2><div class=\"grid\">", t(lang, "trends"));
    for f in p.catalog.iter().filter(|f| f.name != "product_version" && f.name != "product") {
        let _ = write!(h, "<div><h3>{}</h3><p class=\"desc\"><code>{}</code></p>", esc(&f.describe(lang)), esc(&f.name));
        h.push_str(&stacked(&p.weeks, f, current, k, 420));
        h.push_str("</div>");
    }
    h.push_str("</div>");
}

fn kind_note(f: &FieldInfo, lang: &str) -> &'static str {
    match (f.multi, f.rounded, f.bucketed, lang == "de") {
        (true, _, _, false) => "· several per report; shares of reports",
        (true, _, _, true) => "· mehrere je Bericht; Anteile an den Berichten",
        (_, true, _, false) => "· randomly rounded to 1-2-5",
        (_, true, _, true) => "· zufällig auf 1-2-5 gerundet",
        (_, _, true, false) => "· ranges",
        (_, _, true, true) => "· Bereiche",
        _ => "",
    }
}

/// Horizontal bars with counts and shares of the week's reports.
fn bars(cells: &Cells, reports: Shown, k: i64) -> String {
    let row_h = 22;
    let height = row_h * cells.len().max(1) + 4;
    let mut s = format!("<svg viewBox=\"0 0 360 {height}\" width=\"360\" height=\"{height}\" role=\"img\">");
    for (i, (label, shown)) in cells.iter().enumerate() {
        let y = i * row_h + 2;
        let color = if label == OTHER { OTHER_COLOR } else { PALETTE[i % PALETTE.len()] };
        let _ = write!(s, "<text x=\"0\" y=\"{}\">{}</text>", y + 14, esc(&truncate(label, 18)));
        match (shown, reports) {
            (Shown::Count(n), Shown::Count(total)) if total > 0 => {
                let share = *n as f64 / total as f64;
                let w = (share.min(1.0) * 170.0).max(1.0);
                let _ = write!(
                    s,
                    "<rect x=\"110\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" rx=\"2\" fill=\"{color}\"><title>{}</title></rect>\
                     <text class=\"v\" x=\"{:.1}\" y=\"{}\">{} · {:.0} %</text>",
                    esc(label),
                    110.0 + w + 4.0,
                    y + 13,
                    count_svg(*shown, k),
                    share * 100.0
                );
            }
            _ => {
                let _ = write!(s, "<text class=\"v\" x=\"114\" y=\"{}\">{}</text>", y + 13, count_svg(*shown, k));
            }
        }
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn short_week(w: &str) -> String {
    w.split_once("-W").map_or(w.to_string(), |(_, n)| format!("W{n}"))
}

fn reports_chart(weeks: &[WeekCounts], current: &str, k: i64) -> String {
    let (w, hgt, left, bottom) = (900.0, 200.0, 50.0, 24.0);
    let max = weeks.iter().map(|x| x.reports).filter(|n| *n >= k.max(1)).max().unwrap_or(1).max(1) as f64;
    let n = weeks.len().max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let mut s = format!("<svg viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" role=\"img\">");
    let _ = write!(s, "<line class=\"axis\" x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/>", hgt - bottom, w - 10.0);
    for (i, wk) in weeks.iter().enumerate() {
        let x = left + i as f64 * slot;
        let shown = Shown::of(wk.reports, k);
        let incomplete = wk.week.as_str() >= current;
        let color = if incomplete { "#9fbbe0" } else { PALETTE[0] };
        if let Shown::Count(r) = shown {
            let bh = (r as f64 / max) * (hgt - bottom - 24.0);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" rx=\"2\" fill=\"{color}\"><title>{}</title></rect>",
                x + slot * 0.15,
                hgt - bottom - bh,
                slot * 0.7,
                esc(&wk.week)
            );
            let _ = write!(s, "<text class=\"v\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", x + slot / 2.0, hgt - bottom - bh - 4.0, count_svg(shown, k));
        } else {
            let _ = write!(s, "<text class=\"v\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", x + slot / 2.0, hgt - bottom - 4.0, count_svg(shown, k));
        }
        let label = if incomplete { format!("{}*", short_week(&wk.week)) } else { short_week(&wk.week) };
        let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x + slot / 2.0, hgt - 6.0, esc(&label));
    }
    s.push_str("</svg>");
    s
}

/// 100 % stacked bars per week of a field's suppressed cells, with legend.
fn stacked(weeks: &[WeekCounts], f: &FieldInfo, current: &str, k: i64, w: usize) -> String {
    let (hgt, left, bottom) = (150.0, 6.0, 20.0);
    let per_week: Vec<(String, Cells, Shown)> = weeks
        .iter()
        .map(|wk| {
            let empty = Default::default();
            (wk.week.clone(), f.suppress(wk.fields.get(&f.name).unwrap_or(&empty), wk.reports, k), Shown::of(wk.reports, k))
        })
        .collect();
    let mut labels: Vec<String> = vec![];
    for (_, cells, _) in &per_week {
        for (l, _) in cells {
            if l != OTHER && !labels.contains(l) {
                labels.push(l.clone());
            }
        }
    }
    let order: Vec<(String, i64)> = labels.iter().map(|l| (l.clone(), 0)).collect();
    let mut labels: Vec<String> = f.ordered(&order.into_iter().collect()).into_iter().map(|(l, _)| l).collect();
    labels.push(OTHER.to_string());
    let color = |l: &str| {
        if l == OTHER {
            OTHER_COLOR
        } else {
            PALETTE[labels.iter().position(|x| x == l).unwrap_or(0) % PALETTE.len()]
        }
    };
    let wf = w as f64;
    let slot = (wf - left - 4.0) / per_week.len().max(1) as f64;
    let mut s = format!("<svg viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" role=\"img\">");
    for (i, (week, cells, reports)) in per_week.iter().enumerate() {
        let x = left + i as f64 * slot;
        // Multi-valued fields: shares of reports (they may add up to more
        // than 100 %); scale to the largest sum so the bar fits.
        let Shown::Count(total) = reports else { continue };
        let sum: i64 = cells.iter().filter_map(|(_, c)| c.number()).sum();
        let denom = (*total).max(sum).max(1) as f64;
        let mut y = hgt - bottom;
        for (l, c) in cells {
            let Shown::Count(n) = c else { continue };
            let bh = *n as f64 / denom * (hgt - bottom - 6.0);
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: {n} ({:.0} %)</title></rect>",
                x + slot * 0.1,
                slot * 0.8,
                color(l),
                esc(week),
                esc(l),
                *n as f64 / *total as f64 * 100.0
            );
        }
        if per_week.len() <= 26 || i % 2 == 0 {
            let star = if week.as_str() >= current { "*" } else { "" };
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}{star}</text>", x + slot / 2.0, hgt - 6.0, esc(&short_week(week)));
        }
    }
    s.push_str("</svg><ul class=\"legend\">");
    for l in &labels {
        let _ = write!(s, "<li><svg width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> {}</li>", color(l), esc(l));
    }
    s.push_str("</ul>");
    s
}

fn mean_chart(weeks: &[WeekCounts], f: &FieldInfo, current: &str, lang: &str, k: i64) -> String {
    let points: Vec<(String, Option<crate::suppress::Mean>)> = weeks
        .iter()
        .map(|wk| {
            let counts = wk.fields.get(&f.name).map(|c| f.ordered(c)).unwrap_or_default();
            (wk.week.clone(), crate::suppress::mean(&counts, wk.reports, k))
        })
        .collect();
    let (w, hgt, left, bottom) = (420.0, 160.0, 6.0, 20.0);
    let max = points.iter().filter_map(|(_, m)| m.map(|m| m.high)).fold(0.0f64, f64::max).max(1.0);
    let slot = (w - left - 4.0) / points.len().max(1) as f64;
    let y = |v: f64| hgt - bottom - v / max * (hgt - bottom - 10.0);
    let mut s = format!("<svg viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" role=\"img\">");
    let _ = write!(s, "<line class=\"axis\" x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\"/>", hgt - bottom, w - 4.0);
    for (i, (week, m)) in points.iter().enumerate() {
        let x = left + i as f64 * slot + slot / 2.0;
        if let Some(m) = m {
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#8aa6cf\" stroke-width=\"3\"/>\
                 <circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>{}: {} ({}–{})</title></circle>",
                y(m.low),
                y(m.high),
                y(m.mean),
                PALETTE[0],
                esc(week),
                fmt_f(m.mean),
                fmt_f(m.low),
                fmt_f(m.high)
            );
        }
        if points.len() <= 26 || i % 2 == 0 {
            let star = if week.as_str() >= current { "*" } else { "" };
            let _ = write!(s, "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}{star}</text>", hgt - 6.0, esc(&short_week(week)));
        }
    }
    s.push_str("</svg>");
    let latest = points.iter().rev().find(|(w, _)| w.as_str() < current).or(points.last());
    match latest {
        Some((week, Some(m))) => {
            let _ = write!(
                s,
                "<p class=\"expl\">{}: <strong>{}</strong> (95 %: {} – {}), n = {}</p>",
                esc(week),
                fmt_f(m.mean),
                fmt_f(m.low),
                fmt_f(m.high),
                count(Shown::of(m.n, k), k)
            );
        }
        _ => {
            let _ = write!(s, "<p class=\"expl\">{}</p>", t(lang, "nomean"));
        }
    }
    s
}

fn alerts(h: &mut String, d: &DashboardData, lang: &str, k: i64) {
    let _ = write!(h, "<h2>{}</h2><section class=\"card\"><h3>{}</h3>", t(lang, "alerts"), t(lang, "quarantine"));
    if d.quarantine.is_empty() {
        let _ = write!(h, "<p class=\"ok\">{}</p>", t(lang, "none"));
    } else {
        h.push_str("<table>");
        for (digest, n) in &d.quarantine {
            let _ = write!(h, "<tr><td class=\"warn\"><code>{}</code></td><td>{}</td></tr>", esc(digest), count(Shown::of(*n, k), k));
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h3>{}</h3>", t(lang, "rejected"));
    if d.rejected.is_empty() {
        let _ = write!(h, "<p class=\"ok\">{}</p>", t(lang, "none"));
    } else {
        h.push_str("<table>");
        for (reason, n) in &d.rejected {
            let _ = write!(h, "<tr><td class=\"warn\"><code>{}</code></td><td>{}</td></tr>", esc(reason), count(Shown::of(*n as i64, k), k));
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(12), "12");
    }
}
