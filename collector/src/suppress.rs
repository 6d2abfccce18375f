//! Small-cell suppression: the one place that decides which counts may be
//! shown. Every output (JSON endpoints, export, dashboard) passes its counts
//! through here; nothing else turns a stored count into a published one.
//!
//! Rules, for a minimum cell size `k` (`serve --min-cell`, default 10):
//! - A count below `k` is never shown as a number: it is merged into
//!   "other", and "other" itself is shown as `"<k"` when below `k`.
//! - Single-valued fields (bool, choice, bucketed or rounded count,
//!   built-ins): complementary suppression. The published total minus the
//!   cells shown as numbers is 0 or at least `k`; while it is not, the
//!   smallest shown cell is merged too. Reports where the field is not set
//!   are part of "other", so nothing can be derived by subtraction.
//! - Multi-valued fields (`choices`): each member is counted on its own and
//!   the members do not add up to the total, so only the first rule applies.
//! - The number of reports is itself shown only when at least `k`.
//! - Crosstabs show only the rows and columns `fields` shows (see
//!   [`crosstab`]); a mean only when it and its sample size tell nothing
//!   about the values merged into "other" that `fields` hid (see [`mean`]).
//! - No minimum, maximum or extreme percentile is computed anywhere.
//! - A public reader (`--public`) sees complete weeks only
//!   ([`newest_shown_week`]).

use crate::privacy::Week;
use serde_json::Value;

/// The label suppressed cells are merged into.
pub const OTHER: &str = "other";

/// The newest week whose figures may be shown. A public reader sees complete
/// weeks only: the current week's figures change with each report received,
/// so two reads one report apart would give away that installation's values.
/// The vendor (on the admin listener, with its token) sees the live week: it
/// holds the raw reports anyway.
pub fn newest_shown_week(current: Week, public: bool) -> Week {
    if public {
        current.minus(1)
    } else {
        current
    }
}

/// A published count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    Count(i64),
    /// Below k: published as the string "<k".
    Small,
}

impl Shown {
    pub fn of(n: i64, k: i64) -> Shown {
        if n >= k.max(1) {
            Shown::Count(n)
        } else {
            Shown::Small
        }
    }

    pub fn text(self, k: i64) -> String {
        match self {
            Shown::Count(n) => n.to_string(),
            Shown::Small => format!("<{}", k.max(1)),
        }
    }

    pub fn json(self, k: i64) -> Value {
        match self {
            Shown::Count(n) => Value::from(n),
            Shown::Small => Value::from(format!("<{}", k.max(1))),
        }
    }

    pub fn number(self) -> Option<i64> {
        match self {
            Shown::Count(n) => Some(n),
            Shown::Small => None,
        }
    }
}

/// A field's published counts, in the order given, "other" last (if any).
pub type Cells = Vec<(String, Shown)>;

/// Suppresses a single-valued field whose cells count `total` reports in all
/// (reports without a value are the difference and go into "other").
pub fn single(counts: &[(String, i64)], total: i64, k: i64) -> Cells {
    let k = k.max(1);
    let mut shown: Vec<bool> = counts.iter().map(|(_, n)| *n >= k).collect();
    loop {
        let rest = total - counts.iter().zip(&shown).filter(|(_, s)| **s).map(|((_, n), _)| n).sum::<i64>();
        if rest == 0 || rest >= k {
            break;
        }
        // Merge the smallest cell still shown; of equals, the one with the
        // smallest label. Not the first in display order: that order comes
        // from the schema version an endpoint reads it from, and two
        // endpoints merging different equals would show both between them.
        let smallest = counts
            .iter()
            .enumerate()
            .filter(|(i, _)| shown[*i])
            .min_by(|(_, (la, na)), (_, (lb, nb))| (na, la).cmp(&(nb, lb)))
            .map(|(i, _)| i);
        match smallest {
            Some(i) => shown[i] = false,
            None => break,
        }
    }
    let mut out: Cells = counts.iter().zip(&shown).filter(|(_, s)| **s).map(|((l, n), _)| (l.clone(), Shown::Count(*n))).collect();
    let rest = total - out.iter().filter_map(|(_, s)| s.number()).sum::<i64>();
    if rest > 0 {
        out.push((OTHER.to_string(), Shown::of(rest, k)));
    }
    out
}

/// Suppresses a multi-valued field: members below k are merged into "other"
/// (the sum of the merged members' counts).
pub fn multi(counts: &[(String, i64)], k: i64) -> Cells {
    let k = k.max(1);
    let mut out: Cells = counts.iter().filter(|(_, n)| *n >= k).map(|(l, n)| (l.clone(), Shown::Count(*n))).collect();
    let rest: i64 = counts.iter().filter(|(_, n)| *n > 0 && *n < k).map(|(_, n)| n).sum();
    if rest > 0 {
        out.push((OTHER.to_string(), Shown::of(rest, k)));
    }
    out
}

/// A crosstab of two fields: `rows[i]` counts reports with the row value,
/// `cells[i][j]` those with the row value and the column value.
#[derive(Clone, Debug, Default)]
pub struct Crosstab {
    pub row_labels: Vec<String>,
    pub col_labels: Vec<String>,
    pub row_totals: Vec<i64>,
    pub col_totals: Vec<i64>,
    pub cells: Vec<Vec<i64>>,
    /// Reports of the product that week (with either field set or not).
    pub reports: i64,
}

/// Suppressed crosstab: for each row, the shown cells and its "other".
///
/// `rows` and `cols` are the two fields' published cells (their `fields`
/// figures). Only values published there appear as a row or a column: the
/// other rows are merged into one "other" row (for a single-valued row field
/// that row also holds the reports without the field, so the rows add up to
/// the week's reports), the other columns into each row's "other". Otherwise
/// a row's total (its cells plus its "other") would publish a value the
/// complementary rule hid in `fields`, and the rows' sum the number of
/// reports without the field.
///
/// Guaranteed: every cell shown as a number is at least k; in every row
/// (when the column field is single-valued) and in every column (when the
/// row field is single-valued) the row's or column's total minus the cells
/// shown as numbers is 0 or at least k. Not guaranteed: bounds an attacker
/// could derive by combining several rows and columns at once (a
/// linear-programming audit); keep k well above 1 for published data.
pub fn crosstab(t: &Crosstab, rows: &Cells, cols: &Cells, rows_single: bool, cols_single: bool, k: i64) -> Vec<(String, Cells)> {
    let published = |cells: &Cells, label: &str| cells.iter().any(|(l, s)| l == label && l != OTHER && s.number().is_some());
    let t = &fold_rows(t, |l| published(rows, l), rows_single);
    let col_shown: Vec<bool> = t.col_labels.iter().map(|l| published(cols, l)).collect();
    let k = k.max(1);
    let (nr, nc) = (t.row_labels.len(), t.col_labels.len());
    let mut shown: Vec<Vec<bool>> = t.cells.iter().map(|r| r.iter().zip(&col_shown).map(|(n, c)| *c && *n >= k).collect()).collect();
    // Only ever suppressing more, so this settles.
    loop {
        let mut changed = false;
        if cols_single {
            for i in 0..nr {
                changed |= settle(t.row_totals[i], &t.cells, &mut shown, (0..nc).map(|j| (i, j)).collect(), k);
            }
        }
        if rows_single {
            for j in 0..nc {
                changed |= settle(t.col_totals[j], &t.cells, &mut shown, (0..nr).map(|i| (i, j)).collect(), k);
            }
        }
        if !changed {
            break;
        }
    }
    (0..nr)
        .map(|i| {
            let mut cells: Cells =
                (0..nc).filter(|&j| shown[i][j]).map(|j| (t.col_labels[j].clone(), Shown::Count(t.cells[i][j]))).collect();
            let rest: i64 = if cols_single {
                t.row_totals[i] - cells.iter().filter_map(|(_, s)| s.number()).sum::<i64>()
            } else {
                (0..nc).filter(|&j| !shown[i][j]).map(|j| t.cells[i][j]).sum()
            };
            if rest > 0 {
                cells.push((OTHER.to_string(), Shown::of(rest, k)));
            }
            (t.row_labels[i].clone(), cells)
        })
        .collect()
}

/// The crosstab with every row `keep` rejects merged into one "other" row
/// (last). For a single-valued row field, that row is each column's total
/// minus the kept rows, so it includes the reports without the row field.
fn fold_rows(t: &Crosstab, keep: impl Fn(&str) -> bool, rows_single: bool) -> Crosstab {
    let kept: Vec<usize> = (0..t.row_labels.len()).filter(|&i| keep(&t.row_labels[i])).collect();
    let mut out = Crosstab {
        row_labels: kept.iter().map(|&i| t.row_labels[i].clone()).collect(),
        col_labels: t.col_labels.clone(),
        row_totals: kept.iter().map(|&i| t.row_totals[i]).collect(),
        col_totals: t.col_totals.clone(),
        cells: kept.iter().map(|&i| t.cells[i].clone()).collect(),
        reports: t.reports,
    };
    let kept_sum = |col: usize| kept.iter().map(|&i| t.cells[i][col]).sum::<i64>();
    let (total, cells): (i64, Vec<i64>) = if rows_single {
        (t.reports - kept.iter().map(|&i| t.row_totals[i]).sum::<i64>(), (0..t.col_labels.len()).map(|j| t.col_totals[j] - kept_sum(j)).collect())
    } else {
        let hidden: Vec<usize> = (0..t.row_labels.len()).filter(|i| !kept.contains(i)).collect();
        (hidden.iter().map(|&i| t.row_totals[i]).sum(), (0..t.col_labels.len()).map(|j| hidden.iter().map(|&i| t.cells[i][j]).sum()).collect())
    };
    if total > 0 {
        out.row_labels.push(OTHER.to_string());
        out.row_totals.push(total);
        out.cells.push(cells);
    }
    out
}

/// Applies the complementary rule to one line (row or column) of cells;
/// true if it suppressed something.
fn settle(total: i64, cells: &[Vec<i64>], shown: &mut [Vec<bool>], line: Vec<(usize, usize)>, k: i64) -> bool {
    let mut changed = false;
    loop {
        let rest = total - line.iter().filter(|&&(i, j)| shown[i][j]).map(|&(i, j)| cells[i][j]).sum::<i64>();
        if rest == 0 || rest >= k {
            return changed;
        }
        match line.iter().filter(|&&(i, j)| shown[i][j]).min_by_key(|&&(i, j)| cells[i][j]) {
            Some(&(i, j)) => {
                shown[i][j] = false;
                changed = true;
            }
            None => return changed,
        }
    }
}

/// A mean with its 95 % interval, or why there is none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mean {
    pub n: i64,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

/// Mean of a randomly rounded count from its counts per value (labels in
/// the `fields` order) over a week's `total` reports. Random 1-2-5 rounding
/// is unbiased, so the mean of the rounded values is an unbiased estimate of
/// the true mean; its rounding noise is part of the sample variance.
///
/// None when fewer than k reports carry the field (or fewer than 2, when no
/// interval exists), and when the mean and its sample size n would undo the
/// field's suppression in `fields`: total minus n (reports without the
/// field) and n minus the cells shown there (values merged into "other")
/// must each be 0 or at least k; else n would publish a small count and the
/// mean times n the sum, even the one value, of the few merged reports.
pub fn mean(counts: &[(String, i64)], total: i64, k: i64) -> Option<Mean> {
    let histogram: Vec<(f64, i64)> = counts.iter().filter_map(|(l, c)| Some((l.parse::<f64>().ok()?, *c))).collect();
    let n: i64 = histogram.iter().map(|(_, c)| c).sum();
    if n < k.max(2) {
        return None;
    }
    let cells = single(counts, total, k);
    let shown: i64 = cells.iter().filter(|(l, _)| l != OTHER).filter_map(|(_, s)| s.number()).sum();
    let small = |x: i64| x > 0 && x < k.max(1);
    if small(total - n) || small(n - shown) {
        return None;
    }
    // The values merged into "other" are known only through n x mean (their
    // sum) and the interval (with it, their sum of squares). When the
    // largest of them makes up more than half of either, these figures
    // single it out: an extreme value, which is never published.
    let is_shown = |l: &str| cells.iter().any(|(c, s)| c == l && c != OTHER && s.number().is_some());
    let hidden: Vec<(f64, f64)> = counts
        .iter()
        .filter(|(l, c)| *c > 0 && !is_shown(l))
        .filter_map(|(l, c)| Some((l.parse::<f64>().ok()?, *c as f64)))
        .collect();
    let (sum, squares) = hidden.iter().fold((0.0, 0.0), |(s, q), (v, c)| (s + v * c, q + v * v * c));
    if let Some((top, c)) = hidden.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0)) {
        if top > 0.0 && (top * c > sum / 2.0 || top * top * c > squares / 2.0) {
            return None;
        }
    }
    let nf = n as f64;
    let mean = histogram.iter().map(|(v, c)| v * *c as f64).sum::<f64>() / nf;
    let var = histogram.iter().map(|(v, c)| (v - mean).powi(2) * *c as f64).sum::<f64>() / (nf - 1.0);
    let half = 1.96 * (var / nf).sqrt();
    Some(Mean { n, mean, low: (mean - half).max(0.0), high: mean + half })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(v: &[(&str, i64)]) -> Vec<(String, i64)> {
        v.iter().map(|(l, n)| (l.to_string(), *n)).collect()
    }

    #[test]
    fn the_issue_example() {
        // 43 reports; users "1-4", "5-9", "10-24" had 4, 3 and 3.
        let users = single(&c(&[("1-4", 4), ("5-9", 3), ("10-24", 3), ("25-49", 20), ("50-99", 13)]), 43, 10);
        assert_eq!(users, vec![("25-49".into(), Shown::Count(20)), ("50-99".into(), Shown::Count(13)), ("other".into(), Shown::Count(10))]);
        let profiles = multi(&c(&[("imap", 40), ("exchange", 22), ("pst", 3)]), 10);
        assert_eq!(profiles, vec![("imap".into(), Shown::Count(40)), ("exchange".into(), Shown::Count(22)), ("other".into(), Shown::Small)]);
        assert_eq!(Shown::Small.json(10), Value::from("<10"));
    }

    #[test]
    fn complementary_merges_the_next_smallest() {
        // 25 + 12 + 3 = 40: "other" would be 3, so 12 goes too: other 15.
        let out = single(&c(&[("a", 25), ("b", 12), ("c", 3)]), 40, 10);
        assert_eq!(out, vec![("a".into(), Shown::Count(25)), ("other".into(), Shown::Count(15))]);
        // Unset reports count as well: 30 of 32 set -> 2 hidden, so merge.
        let out = single(&c(&[("true", 12), ("false", 18)]), 32, 10);
        assert_eq!(out, vec![("false".into(), Shown::Count(18)), ("other".into(), Shown::Count(14))]);
        // Nothing left to show.
        let out = single(&c(&[("true", 12), ("false", 3)]), 15, 10);
        assert_eq!(out, vec![("other".into(), Shown::Count(15))]);
        let out = single(&c(&[("true", 3)]), 3, 10);
        assert_eq!(out, vec![("other".into(), Shown::Small)]);
        // k = 1 turns suppression off.
        let out = single(&c(&[("a", 1), ("b", 2)]), 3, 1);
        assert_eq!(out, vec![("a".into(), Shown::Count(1)), ("b".into(), Shown::Count(2))]);
    }

    #[test]
    fn crosstab_rows_and_columns() {
        let t = Crosstab {
            row_labels: vec!["linux".into(), "windows".into()],
            col_labels: vec!["false".into(), "true".into()],
            row_totals: vec![30, 40],
            col_totals: vec![55, 15],
            cells: vec![vec![20, 10], vec![35, 5]],
            reports: 70,
        };
        let rows = single(&c(&[("linux", 30), ("windows", 40)]), 70, 10);
        let cols = single(&c(&[("false", 55), ("true", 15)]), 70, 10);
        let out = crosstab(&t, &rows, &cols, true, true, 10);
        // windows/true (5) is small; its row then has 5 hidden -> 35 merged
        // too; column "false" then hides 35 -> fine (>= 10); column "true"
        // hides 5 -> linux/true (10) merged as well.
        for (row, cells) in &out {
            for (_, s) in cells {
                if let Shown::Count(n) = s {
                    assert!(*n >= 10, "{row}: {n}");
                }
            }
        }
        assert_eq!(out[0].1, vec![("false".into(), Shown::Count(20)), ("other".into(), Shown::Count(10))]);
        assert_eq!(out[1].1, vec![("other".into(), Shown::Count(40))]);
    }

    #[test]
    fn mean_and_interval() {
        let m = mean(&c(&[("100", 10), ("200", 10)]), 20, 10).unwrap();
        assert_eq!(m.n, 20);
        assert!((m.mean - 150.0).abs() < 1e-9);
        assert!(m.low < 150.0 && m.high > 150.0);
        assert_eq!(mean(&c(&[("100", 9)]), 9, 10), None);
        // 5 reports without the value: n = 20 of 25 would tell.
        assert_eq!(mean(&c(&[("100", 10), ("200", 10)]), 25, 10), None);
        // "other" holds 9 unset and 1 value: n = 31 of 40 shown as 30 would
        // single the one out (and the mean its value).
        assert_eq!(mean(&c(&[("100", 15), ("200", 15), ("5000", 1)]), 40, 10), None);
        // Merged: 9 x 2000 and 1 x 20000: the one makes up over half of
        // the merged sum; mean and interval would point at it.
        assert_eq!(mean(&c(&[("1000", 20), ("2000", 9), ("20000", 1)]), 30, 10), None);
        // Half of the sum but most of the squares: 9 x 2000 and 1 x 10000.
        assert_eq!(mean(&c(&[("1000", 20), ("2000", 9), ("10000", 1)]), 30, 10), None);
        // 13 merged values, no unset, none of them dominating: fine.
        assert!(mean(&c(&[("500", 20), ("1000", 6), ("2000", 6), ("5000", 1)]), 33, 10).is_some());
    }
}
