//! The dashboard: server-rendered HTML with inline SVG, no script, no
//! external resource. [`gather`] reads stored releases only (never a raw
//! report); [`render`] is pure, prints every released count as an element of
//! class `count` (which the browser test compares with the release) and
//! every text through [`esc`].

use crate::published::group;
use crate::release::{Cell, Real, Release};
use crate::storage::{Store, StoreError};
use crate::AppState;
use std::fmt::Write;

/// Weeks shown in trends.
pub const MAX_WEEKS: usize = 52;

pub struct ProductData {
    pub name: String,
    /// Stored releases, ascending by week (at most [`MAX_WEEKS`]).
    pub releases: Vec<Release>,
}

pub struct DashboardData {
    pub current_week: String,
    pub products: Vec<ProductData>,
    pub quarantine: Vec<(String, i64)>,
    pub rejected: Vec<(&'static str, u64)>,
    /// (week, share in percent of the stored reports that came through the
    /// Oblivious HTTP gateway) of the ended weeks that still have raw
    /// reports: exact, admin only. Neither the current week nor a count of
    /// reports is shown (counts are published through releases only).
    pub gateway: Vec<(String, f64)>,
    pub public: bool,
}

pub async fn gather<S: Store>(state: &AppState<S>) -> Result<DashboardData, StoreError> {
    let mut products = vec![];
    for p in state.store.products().await? {
        let mut releases: Vec<Release> = vec![];
        for (_, body) in state.store.releases(&p.name).await? {
            match Release::from_json(&body) {
                Ok(r) => releases.push(r),
                Err(e) => eprintln!("{e}"),
            }
        }
        let skip = releases.len().saturating_sub(MAX_WEEKS);
        products.push(ProductData { name: p.name, releases: releases.split_off(skip) });
    }
    let (quarantine, rejected, gateway) = if state.options.public {
        (vec![], vec![], vec![])
    } else {
        let rejected = optin_telemetry::validate::Reject::ALL
            .iter()
            .map(|r| (r.name(), state.metrics.rejected(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let current = crate::api::current_week(state).to_string();
        let gateway = state
            .store
            .gateway_weeks()
            .await?
            .into_iter()
            .filter(|(week, _, all)| *week < current && *all > 0)
            .map(|(week, via, all)| (week, 100.0 * via as f64 / all as f64))
            .collect();
        (state.store.quarantine_summary().await?, rejected, gateway)
    };
    Ok(DashboardData {
        current_week: crate::api::current_week(state).to_string(),
        products,
        quarantine,
        rejected,
        gateway,
        public: state.options.public,
    })
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
        "sub" => if de { "Jede Zahl stammt aus einer wöchentlichen Veröffentlichung mit Differential Privacy; aktuelle Woche" } else { "Every figure comes from a weekly differentially private release; current week" },
        "guarantee" => if de {
            "Garantie je Installation: ε = {ey} pro Jahr ({w} Wochen, δ = {d}); je Woche ρ = {rw} (ε = {ew}). Zahlen mit Rauschen; in Klammern das 95-%-Intervall."
        } else {
            "Guarantee per installation: ε = {ey} per year ({w} weeks, δ = {d}); per week ρ = {rw} (ε = {ew}). Figures carry noise; in brackets the 95 % interval."
        },
        "reports" => if de { "Berichte pro Woche" } else { "Reports per week" },
        "reports_expl" => if de {
            "Jede zustimmende, laufende Installation sendet höchstens einen Bericht pro 7-Tage-Abschnitt, zu einem zufälligen Zeitpunkt; die Berichte einer Woche schätzen daher die zustimmenden aktiven Installationen. Strich: 95-%-Intervall des Rauschens."
        } else {
            "Every consenting, running installation sends at most one report per 7-day slot, at a random moment in it; a week's reports therefore estimate the consenting active installations. Whisker: the noise's 95 % interval."
        },
        "latest" => if de { "Verteilung in der letzten veröffentlichten Woche" } else { "Distribution in the latest released week" },
        "means" => if de { "Durchschnitt (begrenzt) und Median, jede Woche" } else { "Average (capped) and median, every week" },
        "mean_h" => if de { "Durchschnitt, jede Installation bis {cap} gezählt" } else { "mean, each installation counted up to {cap}" },
        "median_h" => if de { "Median (1-2-5-Stufe)" } else { "median (1-2-5 step)" },
        "above_h" => if de { "Anteil über der Grenze" } else { "share above the cap" },
        "adoption" => if de { "Verbreitung der Produktversionen (registrierte Versionen; sonst „other“)" } else { "Product version adoption (registered versions; others as \"other\")" },
        "alerts" => if de { "Hinweise" } else { "Alerts" },
        "quarantine" => if de { "Berichte zu nicht registrierten Schemas (Quarantäne)" } else { "Reports for unregistered schemas (quarantine)" },
        "rejected" => if de { "Abgewiesene Berichte seit dem Start, nach Grund" } else { "Rejected reports since start, by reason" },
        "none" => if de { "keine" } else { "none" },
        "gateway" => if de {
            "Anteil der Berichte über Oblivious HTTP (Gateway), je abgeschlossener Woche (exakt: Betriebszahl, kein Feldwert)"
        } else {
            "Share of reports through Oblivious HTTP (the gateway), per ended week (exact: an operational figure, not a field value)"
        },
        "nodata" => if de { "Noch keine veröffentlichte Woche." } else { "No released week yet." },
        "noproducts" => if de { "Kein Produkt registriert (optin-collector product add)." } else { "No product registered (optin-collector product add)." },
        "of" => if de { "Berichte" } else { "reports" },
        "week" => if de { "Woche" } else { "Week" },
        "hidden" => if de { "+ {n} Wert(e), deren Intervall 0 erreicht" } else { "+ {n} value(s) whose interval reaches 0" },
        "too_few" => if de { "zu wenige Berichte" } else { "too few reports" },
        _ => "",
    }
}

const PALETTE: [&str; 10] = ["#2f6fbf", "#e2873b", "#3c9b5a", "#c2464b", "#8a63b8", "#1f9aa6", "#b58a2a", "#d46fa8", "#5d7a8c", "#7f9f3a"];
const OTHER_COLOR: &str = "#b9bec6";

/// A released count as printed: a number, or "<high" where its interval
/// reaches 0 (the noise could hide it entirely).
fn count(value: i64, low: i64, high: i64) -> String {
    if low == 0 && value <= high && value < 20 {
        format!("<data class=\"count\" value=\"{value}\">&lt;{}</data>", group(high.max(1)))
    } else {
        format!("<data class=\"count\" value=\"{value}\">{}</data>", group(value))
    }
}

fn fmt_f(x: f64) -> String {
    if x >= 1e18 {
        "∞".into()
    } else if x >= 100.0 {
        group(x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

fn real(x: &Option<Real>, lang: &str) -> String {
    match x {
        Some(r) => format!("<data class=\"real\" value=\"{}\">{}</data> <small>[{}–{}]</small>", r.value, fmt_f(r.value), fmt_f(r.low), fmt_f(r.high)),
        None => format!("<small>{}</small>", t(lang, "too_few")),
    }
}

fn pct(x: &Option<Real>) -> String {
    match x {
        Some(r) => format!("{:.1} % <small>[{:.1}–{:.1}]</small>", r.value * 100.0, r.low * 100.0, r.high * 100.0),
        None => "–".into(),
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
table{border-collapse:collapse;font-size:13px}table.means td,table.adoption td{padding-right:18px}td,th{padding:3px 10px 3px 0;text-align:left}
.ok{color:#3c9b5a}.warn{color:#c2464b}
";

pub fn render(d: &DashboardData, lang: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/dashboard.css\"></head><body>\
         <header><h1>{}</h1><p>{} {}</p></header><main>",
        t(lang, "title"),
        t(lang, "title"),
        esc(t(lang, "sub")),
        esc(&d.current_week)
    );
    if d.products.is_empty() {
        let _ = write!(h, "<section class=\"card\"><p>{}</p></section>", t(lang, "noproducts"));
    }
    for p in &d.products {
        product(&mut h, p, lang);
    }
    if !d.public {
        alerts(&mut h, d, lang);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn guarantee_text(r: &Release, lang: &str) -> String {
    let g = &r.guarantee;
    t(lang, "guarantee")
        .replace("{ey}", &format!("{:.2}", g.epsilon_per_year))
        .replace("{w}", &g.weeks_per_year.to_string())
        .replace("{d}", &format!("{:e}", g.delta))
        .replace("{rw}", &format!("{:.4}", g.rho_week))
        .replace("{ew}", &format!("{:.2}", g.epsilon_week))
}

fn product(h: &mut String, p: &ProductData, lang: &str) {
    let _ = write!(h, "<h2>{}</h2>", esc(&p.name));
    let Some(latest) = p.releases.last() else {
        let _ = write!(h, "<section class=\"card\"><p>{}</p></section>", t(lang, "nodata"));
        return;
    };
    let _ = write!(h, "<section class=\"card\"><p class=\"guarantee\">{}</p></section>", esc(&guarantee_text(latest, lang)));
    let _ = write!(h, "<section class=\"card\"><h3>{}</h3><p class=\"expl\">{}</p>", t(lang, "reports"), esc(t(lang, "reports_expl")));
    h.push_str(&reports_chart(&p.releases));
    h.push_str("</section>");

    // The rounded counts' capped mean and median, every released week.
    for (name, _) in latest.means.iter() {
        let desc = describe(latest, name, lang);
        let _ = write!(h, "<h2>{} <small><code>{}</code></small></h2><section class=\"card\"><table class=\"means\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t(lang, "means")), esc(name), t(lang, "week"), t(lang, "of"),
            esc(&t(lang, "mean_h").replace("{cap}", &group(latest.means[name].cap))), t(lang, "median_h"), t(lang, "above_h"));
        for r in p.releases.iter().rev() {
            let Some(s) = r.means.get(name).filter(|_| r.has_figures()) else {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td><td colspan=\"3\"><small>{}</small></td></tr>",
                    esc(&r.week), count(r.reports.value, r.reports.low, r.reports.high), t(lang, "too_few"));
                continue;
            };
            let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.week), count(r.reports.value, r.reports.low, r.reports.high), real(&s.mean, lang), real(&s.median, lang), pct(&s.share_above_cap));
        }
        let _ = write!(h, "</table><p class=\"desc\">{}</p></section>", esc(&desc));
    }

    let _ = write!(
        h,
        "<h2>{} <small>({} {}, {} {})</small></h2><div class=\"grid\">",
        t(lang, "latest"),
        t(lang, "week"),
        esc(&latest.week),
        count(latest.reports.value, latest.reports.low, latest.reports.high),
        t(lang, "of")
    );
    if !latest.has_figures() {
        let _ = write!(h, "<section class=\"card\"><p>{}</p></section>", t(lang, "too_few"));
    }
    for name in latest.order.iter().filter(|_| latest.has_figures()) {
        let Some(cells) = latest.fields.get(name) else { continue };
        if latest.means.contains_key(name) {
            continue; // 60 steps of the series: summarised above
        }
        let _ = write!(h, "<div><h3>{}</h3><p class=\"desc\"><code>{}</code></p>", esc(&describe(latest, name, lang)), esc(name));
        h.push_str(&bars(cells, latest.reports.value, lang));
        h.push_str("</div>");
    }
    h.push_str("</div>");

    let _ = write!(h, "<h2>{}</h2><section class=\"card\">", t(lang, "adoption"));
    h.push_str(&adoption(&p.releases));
    h.push_str("</section>");
}

fn describe(r: &Release, name: &str, lang: &str) -> String {
    r.describe(name, lang)
}

/// Horizontal bars with counts, interval whiskers and shares. Values whose
/// interval reaches 0 are left out of the bars (the noise could account for
/// all of them) and counted in a note, except "other".
fn bars(cells: &[Cell], reports: i64, lang: &str) -> String {
    let single = cells.iter().any(|c| c.label == crate::release::OTHER);
    // Shares of a single-valued field are of its cells' sum (the noisy
    // cells need not add up to the noisy number of reports).
    let total = if single { cells.iter().map(|c| c.value).sum::<i64>() } else { reports }.max(1);
    let hidden = cells.iter().filter(|c| c.low == 0 && c.label != crate::release::OTHER).count();
    let cells: Vec<&Cell> = cells.iter().filter(|c| c.low > 0 || c.label == crate::release::OTHER).collect();
    let note = if hidden > 0 { format!("<p class=\"desc\">{}</p>", t(lang, "hidden").replace("{n}", &hidden.to_string())) } else { String::new() };
    let reports = total;
    let row_h = 22;
    let height = row_h * cells.len().max(1) + 4;
    let max = cells.iter().map(|c| c.high).max().unwrap_or(1).max(1) as f64;
    let mut s = format!("<svg viewBox=\"0 0 360 {height}\" width=\"360\" height=\"{height}\" role=\"img\">");
    for (i, c) in cells.iter().enumerate() {
        let y = i * row_h + 2;
        let w = (c.value as f64 / max * 170.0).round();
        let (x0, x1) = (110.0 + c.low as f64 / max * 170.0, 110.0 + c.high as f64 / max * 170.0);
        let color = if c.label == crate::release::OTHER { OTHER_COLOR } else { PALETTE[i % PALETTE.len()] };
        let share = if reports > 0 { c.value as f64 * 100.0 / reports as f64 } else { 0.0 };
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"110\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"{color}\"/>\
             <line class=\"ci\" x1=\"{x0:.1}\" x2=\"{x1:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#1d2430\"/>\
             <text class=\"v\" x=\"{}\" y=\"{}\"><tspan class=\"count\">{}</tspan> ({share:.0} %)</text>",
            y + 12,
            esc(&truncate(&c.label, 16)),
            y + 8,
            y + 8,
            (x1 + 4.0).min(292.0),
            y + 12,
            if c.low == 0 && c.value < 20 { format!("&lt;{}", group(c.high.max(1))) } else { group(c.value) },
        );
    }
    s.push_str("</svg>");
    s.push_str(&note);
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
    w.split_once('-').map_or(w.to_string(), |(_, x)| x.to_string())
}

fn reports_chart(releases: &[Release]) -> String {
    let n = releases.len().max(1);
    let bar = (860 / n).clamp(6, 60);
    let width = bar * n + 40;
    let max = releases.iter().map(|r| r.reports.high).max().unwrap_or(1).max(1) as f64;
    let mut s = format!("<svg viewBox=\"0 0 {width} 160\" width=\"{width}\" height=\"160\" role=\"img\">");
    for (i, r) in releases.iter().enumerate() {
        let x = 20 + i * bar;
        let hgt = r.reports.value as f64 / max * 120.0;
        let (lo, hi) = (140.0 - r.reports.low as f64 / max * 120.0, 140.0 - r.reports.high as f64 / max * 120.0);
        let mid = x + bar / 2;
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{:.1}\" width=\"{}\" height=\"{hgt:.1}\" fill=\"#2f6fbf\"/><line x1=\"{mid}\" x2=\"{mid}\" y1=\"{lo:.1}\" y2=\"{hi:.1}\" stroke=\"#1d2430\"/>\
             <text x=\"{mid}\" y=\"155\" text-anchor=\"middle\">{}</text><text class=\"v\" x=\"{mid}\" y=\"{:.1}\" text-anchor=\"middle\"><tspan class=\"count\">{}</tspan></text>",
            x + 2,
            140.0 - hgt,
            bar.saturating_sub(4).max(2),
            esc(&short_week(&r.week)),
            (hi - 3.0).max(10.0),
            group(r.reports.value)
        );
    }
    s.push_str("</svg>");
    s
}

/// Shares of the product versions per week, as a table.
fn adoption(releases: &[Release]) -> String {
    let mut versions: Vec<String> = vec![];
    for r in releases {
        for c in r.fields.get("product_version").into_iter().flatten() {
            if !versions.contains(&c.label) {
                versions.push(c.label.clone());
            }
        }
    }
    let mut s = String::from("<table class=\"adoption\"><tr><th></th>");
    for v in &versions {
        let _ = write!(s, "<th>{}</th>", esc(v));
    }
    s.push_str("</tr>");
    for r in releases.iter().rev() {
        let _ = write!(s, "<tr><td>{}</td>", esc(&r.week));
        let cells = r.fields.get("product_version").filter(|_| r.has_figures());
        let total: i64 = cells.into_iter().flatten().map(|c| c.value).sum::<i64>().max(1);
        for v in &versions {
            match cells.and_then(|cs| cs.iter().find(|c| &c.label == v)) {
                Some(c) => {
                    let _ = write!(s, "<td>{} <small>({:.0} %)</small></td>", count(c.value, c.low, c.high), c.value as f64 * 100.0 / total as f64);
                }
                None => s.push_str("<td>–</td>"),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

fn alerts(h: &mut String, d: &DashboardData, lang: &str) {
    // Operational figures of the vendor's own collector (admin only): exact.
    let _ = write!(h, "<h2>{}</h2><section class=\"card\"><h3>{}</h3>", t(lang, "alerts"), t(lang, "quarantine"));
    if d.quarantine.is_empty() {
        let _ = write!(h, "<p class=\"ok\">{}</p>", t(lang, "none"));
    } else {
        h.push_str("<table>");
        for (digest, n) in &d.quarantine {
            let _ = write!(h, "<tr><td class=\"warn\"><code>{}</code></td><td>{}</td></tr>", esc(digest), group(*n));
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h3>{}</h3>", t(lang, "rejected"));
    if d.rejected.is_empty() {
        let _ = write!(h, "<p class=\"ok\">{}</p>", t(lang, "none"));
    } else {
        h.push_str("<table>");
        for (reason, n) in &d.rejected {
            let _ = write!(h, "<tr><td class=\"warn\"><code>{}</code></td><td>{}</td></tr>", esc(reason), group(*n as i64));
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h3>{}</h3>", t(lang, "gateway"));
    if d.gateway.is_empty() {
        let _ = write!(h, "<p class=\"ok\">{}</p>", t(lang, "none"));
    } else {
        h.push_str("<table class=\"gateway\">");
        for (week, share) in &d.gateway {
            let _ = write!(h, "<tr><td>{}</td><td>{share:.1} %</td></tr>", esc(week));
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
        assert_eq!(count(12, 0, 40), "<data class=\"count\" value=\"12\">&lt;40</data>");
        assert_eq!(count(1234, 1200, 1270), "<data class=\"count\" value=\"1234\">1,234</data>");
    }
}
