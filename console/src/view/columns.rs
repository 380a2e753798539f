//! Tables: a column spec (header, width, alignment, how it widens) and one width solver for
//! every table of the console.
//!
//! One column per table fills what the others leave. The others start at their `min` width (0
//! hides a column) and widen step by step, in priority order, as long as the fill column keeps
//! at least the step's `keep` columns; steps of the same priority are taken together or not at
//! all, and a column's steps are taken in order. Cells are separated by one column and the
//! table starts one column in from the left.

use std::borrow::Cow;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use super::draw::{Align, cell, spans};
use super::theme::Theme;
use crate::text::{fit_middle, width};

/// One widening of a column.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Lower steps are taken first.
    pub priority: u8,
    /// The column's width once taken.
    pub width: u16,
    /// Columns the fill column must keep after the step.
    pub keep: u16,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Its header (tables without a header row ignore it).
    pub header: &'static str,
    pub align: Align,
    /// Width on the narrowest terminal (0: hidden until a step shows it); for the fill
    /// column, the least it gets.
    pub min: u16,
    /// How it widens; the last step's width is its widest.
    pub steps: &'static [Step],
    /// Whether it takes the width the others leave (one column per table).
    pub fill: bool,
}

impl Step {
    /// Taken at `priority` if the fill column keeps `keep` columns; makes the column `width`.
    pub const fn new(priority: u8, width: u16, keep: u16) -> Self {
        Self {
            priority,
            width,
            keep,
        }
    }
}

impl Column {
    /// A left-aligned column of fixed width.
    pub const fn fixed(header: &'static str, width: u16) -> Self {
        Self {
            header,
            align: Align::Left,
            min: width,
            steps: &[],
            fill: false,
        }
    }

    /// A column of `min` columns that widens by `steps`.
    pub const fn grows(header: &'static str, min: u16, steps: &'static [Step]) -> Self {
        Self {
            header,
            align: Align::Left,
            min,
            steps,
            fill: false,
        }
    }

    /// The column that takes the rest, never less than `min`.
    pub const fn fill(header: &'static str, min: u16) -> Self {
        Self {
            header,
            align: Align::Left,
            min,
            steps: &[],
            fill: true,
        }
    }

    /// The same column, right-aligned.
    pub const fn right(mut self) -> Self {
        self.align = Align::Right;
        self
    }
}

/// A table's columns, left to right.
#[derive(Debug)]
pub struct Table {
    pub columns: &'static [Column],
    /// Columns left free at the right edge.
    pub right_pad: u16,
}

impl Table {
    /// The widths of every column on `w` columns.
    pub fn solve(&'static self, w: u16) -> Widths {
        let cols = self.columns;
        let mut widths: Vec<u16> = cols
            .iter()
            .map(|c| if c.fill { 0 } else { c.min })
            .collect();
        let taken: i32 = widths
            .iter()
            .filter(|&&x| x > 0)
            .map(|&x| i32::from(x) + 1)
            .sum();
        let mut avail = i32::from(w) - 1 - i32::from(self.right_pad) - taken;
        let mut next = vec![0usize; cols.len()];
        let mut priorities: Vec<u8> = cols
            .iter()
            .flat_map(|c| c.steps)
            .map(|s| s.priority)
            .collect();
        priorities.sort_unstable();
        priorities.dedup();
        for p in priorities {
            // The step of priority `p` of every column whose steps so far were all taken.
            let group: Vec<(usize, Step)> = cols
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.steps.get(next[i]).map(|s| (i, *s)))
                .filter(|(_, s)| s.priority == p)
                .collect();
            if group.is_empty() {
                continue;
            }
            let cost: i32 = group
                .iter()
                .map(|&(i, s)| {
                    i32::from(s.width) - i32::from(widths[i]) + i32::from(widths[i] == 0)
                })
                .sum();
            let keep = group
                .iter()
                .map(|(_, s)| i32::from(s.keep))
                .max()
                .unwrap_or(0);
            if avail - cost >= keep {
                avail -= cost;
                for (i, s) in group {
                    widths[i] = s.width;
                    next[i] += 1;
                }
            } else {
                // A column's later steps wait for this one.
                for (i, _) in group {
                    next[i] = usize::MAX;
                }
            }
        }
        for (i, c) in cols.iter().enumerate() {
            if c.fill {
                widths[i] = avail.max(i32::from(c.min)) as u16;
            }
        }
        Widths {
            table: self,
            widths,
        }
    }
}

/// A table solved for one width.
#[derive(Debug)]
pub struct Widths {
    table: &'static Table,
    widths: Vec<u16>,
}

impl Widths {
    /// The width of column `i` (0: hidden).
    pub fn get(&self, i: usize) -> u16 {
        self.widths[i]
    }

    /// Makes column `i` `w` wide (a hidden one shows) if the fill column keeps its least width
    /// after giving the difference (or takes what `i` gives back); says whether it did.
    pub fn resize(&mut self, i: usize, w: u16) -> bool {
        let cols = self.table.columns;
        let Some(f) = cols.iter().position(|c| c.fill) else {
            return false;
        };
        let old = i32::from(self.widths[i]);
        let sep = |x: i32| i32::from(x > 0);
        let cost = i32::from(w) + sep(i32::from(w)) - old - sep(old);
        let fill = i32::from(self.widths[f]) - cost;
        if i == f || fill < i32::from(cols[f].min) {
            return false;
        }
        self.widths[i] = w;
        self.widths[f] = fill as u16;
        true
    }

    /// Makes column `i` `want` wide, or as wide as the fill column keeping `keep` allows (a
    /// narrower `want` always).
    pub fn fit(&mut self, i: usize, want: u16, keep: u16) {
        let Some(f) = self.table.columns.iter().position(|c| c.fill) else {
            return;
        };
        let spare = self.widths[f].saturating_sub(keep);
        let to = want.min(self.widths[i] + spare);
        if to != self.widths[i] {
            self.resize(i, to);
        }
    }

    /// Draws the header row at the top of `r`.
    pub fn header(&self, buf: &mut Buffer, r: Rect, th: Theme) {
        let mut row = self.row(buf, r.x, r.y, th);
        for c in self.table.columns {
            row.text(c.header, th.head());
        }
    }

    /// A writer for one row of the table at (x0, y).
    pub fn row<'a>(&'a self, buf: &'a mut Buffer, x0: u16, y: u16, th: Theme) -> Cells<'a> {
        Cells {
            buf,
            widths: self,
            x: x0 + 1,
            y,
            col: 0,
            th,
        }
    }
}

/// Writes the cells of one row, left to right.
pub struct Cells<'a> {
    buf: &'a mut Buffer,
    widths: &'a Widths,
    x: u16,
    y: u16,
    col: usize,
    th: Theme,
}

impl Cells<'_> {
    /// Writes the next cell (nothing for a hidden column), cut to its width.
    pub fn text(&mut self, text: &str, style: Style) {
        let (w, align) = self.next();
        self.x = cell(self.buf, self.x, self.y, w, text, style, align, self.th);
    }

    /// Writes `prefix` then `text` as the next cell, `text` cut in the middle when too long
    /// (names whose end tells them apart: SPIFFE paths).
    pub fn middle(&mut self, prefix: &str, text: &str, style: Style) {
        let (w, align) = self.next();
        let room = usize::from(w).saturating_sub(width(prefix));
        let t = format!("{prefix}{}", fit_middle(text, room, self.th.g.ellipsis));
        self.x = cell(self.buf, self.x, self.y, w, &t, style, align, self.th);
    }

    /// Writes styled pieces as the next cell, cut to its width.
    pub fn parts(&mut self, parts: &[(Cow<'_, str>, Style)]) {
        let (w, _) = self.next();
        if w > 0 {
            spans(self.buf, self.x, self.y, w, parts, self.th);
            self.x += w + 1;
        }
    }

    fn next(&mut self) -> (u16, Align) {
        let i = self.col;
        self.col += 1;
        let c = &self.widths.table.columns[i];
        (self.widths.widths[i], c.align)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{daemons, events, tree};
    use super::{Column, Step, Table};

    fn widths(t: &'static super::Table, w: u16) -> Vec<u16> {
        let s = t.solve(w);
        (0..t.columns.len()).map(|i| s.get(i)).collect()
    }

    #[test]
    fn optional_columns_appear_in_priority_order() {
        // NAME STATE LEVEL LEFT TTL EXPIRES KEY: the short expiry first, then the bar, the
        // full expiry and the key, each while the name keeps 31 columns.
        assert_eq!(widths(&tree::TABLE, 80), [32, 15, 10, 8, 0, 10, 0]);
        assert_eq!(widths(&tree::TABLE, 88), [31, 15, 10, 8, 8, 10, 0]);
        assert_eq!(widths(&tree::TABLE, 98), [31, 15, 10, 8, 8, 20, 0]);
        assert_eq!(widths(&tree::TABLE, 160), [82, 15, 10, 8, 8, 20, 10]);
        // The error column keeps 24 once the segment shows.
        assert_eq!(widths(&daemons::TABLE, 80), [10, 10, 0, 15, 9, 7, 0, 0, 23]);
        assert_eq!(widths(&daemons::TABLE, 90), [10, 10, 8, 15, 9, 7, 0, 0, 24]);
    }

    #[test]
    fn steps_of_one_priority_are_taken_together() {
        const WIDE: Step = Step::new(1, 20, 55);
        static T: Table = Table {
            columns: &[
                Column::grows("A", 10, &[WIDE]),
                Column::fixed("B", 9),
                Column::grows("C", 16, &[WIDE]),
                Column::fill("D", 0),
            ],
            right_pad: 1,
        };
        assert_eq!(widths(&T, 108), [10, 9, 16, 68]);
        assert_eq!(widths(&T, 109), [20, 9, 20, 55]);
    }

    #[test]
    fn resize_takes_from_the_fill_column() {
        let mut w = events::TABLE.solve(80);
        let (name, msg) = (w.get(2), w.get(4));
        assert!(w.resize(2, name + 5));
        assert_eq!((w.get(2), w.get(4)), (name + 5, msg - 5));
        assert!(!w.resize(2, 200), "the fill keeps its least width");
        assert!(w.resize(2, 0), "hidden: its separator goes too");
        assert_eq!(w.get(4), msg + name + 1);
        assert!(w.resize(2, name));
        w.fit(2, 200, 20);
        assert_eq!(w.get(4), 20, "fit widens while the fill keeps 20");
    }
}
