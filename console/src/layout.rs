//! Where everything goes, computed from the terminal size and the state (no drawing): the
//! screen's areas, the rows of each list, page sizes, and the overlays' frame and length.
//! `update` uses it for page moves, scroll limits and mouse clicks; the view draws into it.
//!
//! Height on a large terminal goes to content: the windows pane takes its segments' lines
//! (6 to 16), the events pane at least [`EVENTS_PANE`] lines, and the main list the rest. When
//! the list needs fewer lines than it is given, the spare goes to the events pane, up to one
//! line per event; whatever is still spare stays with the list (blank lines below its end,
//! never in the middle of the screen).

use ratatui::layout::Rect;

use trustdeck_topology::fleet::SegmentWindow;

use crate::app::View;
use crate::text::TextLine;

/// Smallest usable terminal width.
pub const MIN_WIDTH: u16 = 80;
/// Smallest usable terminal height.
pub const MIN_HEIGHT: u16 = 24;

/// Lines per item in the segments view.
pub const SEGMENT_LINES: u16 = 5;

/// Least lines of the events pane on a large terminal (its title bar included).
pub const EVENTS_PANE: u16 = 8;

/// What the panes have to show, which decides who gets spare height.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Content {
    /// Lines of the windows pane's segments ([`window_lines`] summed).
    pub window_lines: u16,
    /// Segment windows (for the strip of a small terminal).
    pub segments: usize,
    /// Items of the current view.
    pub items: usize,
    /// Events the events pane could show.
    pub events: usize,
}

/// The screen's areas. Panes that are not shown have a height of 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// The title bar: trust domain, health, daemons, clock.
    pub header: Rect,
    /// Why the fleet is not healthy (or that it is).
    pub reasons: Rect,
    /// The compact per-segment table above the list (small terminals).
    pub strip: Rect,
    /// The current view: its title bar, column header and rows.
    pub main: Rect,
    /// The autonomous windows (large terminals).
    pub windows: Rect,
    /// What expires next (large terminals, beside the windows).
    pub soonest: Rect,
    /// Recent events (large terminals).
    pub events: Rect,
    /// Key hints, the typed filter or command, messages.
    pub footer: Rect,
}

/// Whether a terminal of `area` fits the console at all.
pub fn fits(area: Rect) -> bool {
    area.width >= MIN_WIDTH && area.height >= MIN_HEIGHT
}

/// The whole terminal of `size` (width, height).
pub fn screen(size: (u16, u16)) -> Rect {
    Rect::new(0, 0, size.0, size.1)
}

/// Whether the terminal is large enough for the windows, soonest and events panes.
fn is_large(area: Rect) -> bool {
    area.width >= 120 && area.height >= 40
}

fn rows_of(area: Rect, y: u16, h: u16) -> Rect {
    Rect::new(area.x, y, area.width, h)
}

/// Lines one segment takes in the windows pane (the root has no upstream sentence).
pub fn window_lines(w: &SegmentWindow) -> u16 {
    if w.is_downstream() { 4 } else { 3 }
}

/// Lines the main area needs to show every item of `view` (title bar and header included).
fn main_need(view: View, items: usize) -> u16 {
    let lines = items.saturating_mul(usize::from(item_height(view)));
    list_skip(view).saturating_add(u16::try_from(lines).unwrap_or(u16::MAX))
}

/// The areas of a terminal of `area` showing `view` with this content.
pub fn areas(area: Rect, view: View, c: Content) -> Areas {
    let h = area.height;
    let header = rows_of(area, area.y, 1);
    let reasons = rows_of(area, area.y + 1, 1);
    let footer = rows_of(area, (area.y + h).saturating_sub(1), 1);
    let body_y = area.y + 2;
    let body_h = h.saturating_sub(3);
    let zero = Rect::new(area.x, body_y, 0, 0);
    if is_large(area) {
        let bottom_h = (1 + c.window_lines).clamp(6, 16);
        // The events view is the events pane made large: no second copy below it.
        let least_events = if view == View::Events { 0 } else { EVENTS_PANE };
        let avail = body_h.saturating_sub(bottom_h + least_events);
        let spare = avail.saturating_sub(main_need(view, c.items));
        let events_need = u16::try_from(c.events + 1).unwrap_or(u16::MAX);
        let extra = if view == View::Events {
            0
        } else {
            spare.min(events_need.saturating_sub(EVENTS_PANE))
        };
        let main_h = avail - extra;
        let by = body_y + main_h;
        // The segments view is the windows pane made large: "expires next" takes the row.
        let left_w = if view == View::Segments {
            0
        } else {
            area.width * 3 / 5
        };
        let soonest_x = if left_w == 0 { 0 } else { left_w + 1 };
        Areas {
            header,
            reasons,
            strip: zero,
            main: rows_of(area, body_y, main_h),
            windows: Rect::new(area.x, by, left_w, bottom_h),
            soonest: Rect::new(area.x + soonest_x, by, area.width - soonest_x, bottom_h),
            events: rows_of(area, by + bottom_h, least_events + extra),
            footer,
        }
    } else {
        let n = u16::try_from(c.segments).unwrap_or(u16::MAX);
        let strip_h = if view == View::Segments || n == 0 {
            0
        } else {
            2 + n.min(4)
        };
        Areas {
            header,
            reasons,
            strip: rows_of(area, body_y, strip_h),
            main: rows_of(area, body_y + strip_h, body_h.saturating_sub(strip_h)),
            windows: zero,
            soonest: zero,
            events: zero,
            footer,
        }
    }
}

/// Screen lines per item of `view`.
pub fn item_height(view: View) -> u16 {
    if view == View::Segments {
        SEGMENT_LINES
    } else {
        1
    }
}

/// Lines above the rows in the main area: the title bar, and the column header (the segments
/// view has none).
fn list_skip(view: View) -> u16 {
    if view == View::Segments { 1 } else { 2 }
}

/// The rows of `view` within its main area `main`.
pub fn rows_in(main: Rect, view: View) -> Rect {
    let skip = list_skip(view);
    Rect::new(
        main.x,
        main.y + skip,
        main.width,
        main.height.saturating_sub(skip),
    )
}

/// Where the rows of `view` are drawn on a terminal of `area` (below the title bar and the
/// column header; nothing when the terminal is too small).
pub fn list_area(area: Rect, view: View, c: Content) -> Rect {
    if !fits(area) {
        return Rect::new(0, 0, 0, 0);
    }
    rows_in(areas(area, view, c).main, view)
}

/// Lines of `view`'s list on screen: what a page move moves (at least one).
pub fn page(area: Rect, view: View, c: Content) -> usize {
    usize::from(list_area(area, view, c).height).max(1)
}

/// The frame of the help and detail overlays.
pub fn overlay_rect(area: Rect) -> Rect {
    let w = if area.width < 120 {
        area.width
    } else {
        area.width.saturating_sub(8).min(110)
    };
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + 1,
        w,
        area.height.saturating_sub(2),
    )
}

/// Lines of an overlay visible at once on a terminal of `area`.
pub fn overlay_page(area: Rect) -> usize {
    usize::from(overlay_rect(area).height.saturating_sub(2)).max(1)
}

/// Screen lines taken by `lines` wrapped at `w` columns.
pub fn wrapped_len(lines: &[TextLine], w: u16) -> usize {
    let w = usize::from(w).max(1);
    lines.iter().map(|l| l.width().div_ceil(w).max(1)).sum()
}

/// Screen lines an overlay document takes inside its frame on a terminal of `area`.
pub fn overlay_len(doc: &[TextLine], area: Rect) -> usize {
    wrapped_len(doc, overlay_rect(area).width.saturating_sub(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(items: usize, events: usize) -> Content {
        Content {
            window_lines: 11,
            segments: 3,
            items,
            events,
        }
    }

    #[test]
    fn spare_height_goes_to_the_events_when_the_list_is_short() {
        // 200x60, 23 tree rows, 40 events: the tree shows every row with no blank line, the
        // events pane takes the rest.
        let a = areas(screen((200, 60)), View::Tree, content(23, 40));
        assert_eq!(rows_in(a.main, View::Tree).height, 23);
        assert_eq!(a.events.height, 60 - 3 - 12 - 25);
        assert_eq!(a.events.y + a.events.height, a.footer.y);
        // Few events: they get what they need, the list keeps the rest.
        let a = areas(screen((200, 60)), View::Tree, content(23, 12));
        assert_eq!(a.events.height, 13);
        assert_eq!(rows_in(a.main, View::Tree).height, 60 - 3 - 12 - 13 - 2);
        // Fewer events than the least pane: the pane keeps its least height.
        let a = areas(screen((200, 60)), View::Tree, content(23, 2));
        assert_eq!(a.events.height, EVENTS_PANE);
    }

    #[test]
    fn a_long_list_keeps_the_height() {
        let a = areas(screen((200, 60)), View::Tree, content(500, 500));
        assert_eq!(a.events.height, EVENTS_PANE);
        assert_eq!(a.main.height, 60 - 3 - 12 - EVENTS_PANE);
        let a = areas(screen((160, 48)), View::Segments, content(3, 500));
        // Segments take 5 lines each: 1 + 15 needed.
        assert_eq!(a.main.height, 16);
    }

    #[test]
    fn the_segments_view_has_no_windows_pane_below_it() {
        let a = areas(screen((160, 48)), View::Segments, content(3, 5));
        assert_eq!(a.windows.width, 0);
        assert_eq!((a.soonest.x, a.soonest.width), (0, 160));
        let a = areas(screen((160, 48)), View::Tree, content(3, 5));
        assert_eq!(a.windows.width, 96);
    }

    #[test]
    fn the_events_view_has_no_events_pane_below_it() {
        let a = areas(screen((120, 40)), View::Events, content(40, 40));
        assert_eq!(a.events.height, 0);
        assert_eq!(a.main.height, 40 - 3 - 12);
    }
}
