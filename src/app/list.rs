//! A cursor over a list that may be far longer than the screen.

use std::cell::Cell;
use std::ops::Range;

/// Selected index plus the first visible row. The renderer adjusts the
/// offset so the selection stays visible (a `Cell`, so drawing can take
/// `&App`): only the rows in [`window`](Self::window) are ever built.
#[derive(Debug, Default, Clone)]
pub struct ListCursor {
    pub index: usize,
    offset: Cell<usize>,
    /// The viewport's height at the last draw (0: never drawn).
    height: Cell<usize>,
}

/// Rows taken around the screen before the first draw, when its height is
/// not known yet.
const FIRST_DRAW_ROWS: usize = 100;

impl ListCursor {
    pub fn clamp(&mut self, len: usize) {
        self.index = self.index.min(len.saturating_sub(1));
    }

    pub fn move_by(&mut self, delta: isize, len: usize) {
        if len == 0 {
            self.index = 0;
            return;
        }
        // In usize throughout: `len as isize` wraps for lengths past
        // isize::MAX, and a clamp to a negative bound panics.
        let moved = if delta < 0 {
            self.index.saturating_sub(delta.unsigned_abs())
        } else {
            self.index.saturating_add(delta.unsigned_abs())
        };
        self.index = moved.min(len - 1);
    }

    pub fn first(&mut self) {
        self.index = 0;
    }

    pub fn last(&mut self, len: usize) {
        self.index = len.saturating_sub(1);
    }

    /// The rows to draw in a viewport of `height` rows, scrolling as
    /// little as possible to keep the selection in view.
    pub fn window(&self, len: usize, height: usize) -> Range<usize> {
        if height == 0 || len == 0 {
            return 0..0;
        }
        let index = self.index.min(len - 1);
        let mut offset = self.offset.get().min(len.saturating_sub(height));
        if index < offset {
            offset = index;
        } else if index >= offset + height {
            offset = index + 1 - height;
        }
        self.offset.set(offset);
        self.height.set(height);
        offset..(offset + height).min(len)
    }

    /// The rows the next draw may show: the last draw's window and a screen
    /// either side (the cursor moves at most a page between draws), for
    /// taking what those rows need before drawing.
    pub fn near_window(&self, len: usize) -> Range<usize> {
        let height = match self.height.get() {
            0 => FIRST_DRAW_ROWS,
            h => h,
        };
        let offset = self.offset.get().min(len);
        let start = offset.saturating_sub(height);
        start..offset.saturating_add(2 * height).min(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_stop_at_the_ends_whatever_the_length() {
        let mut c = ListCursor::default();
        c.move_by(-5, 10);
        assert_eq!(c.index, 0);
        c.move_by(25, 10);
        assert_eq!(c.index, 9);
        c.move_by(isize::MIN, 10);
        assert_eq!(c.index, 0);
        // A length past isize::MAX (a caller that does not know it) once
        // made the clamp's bound negative: a panic from a key press.
        c.move_by(1, usize::MAX);
        assert_eq!(c.index, 1);
        c.move_by(-1, usize::MAX);
        assert_eq!(c.index, 0);
        c.move_by(3, 0);
        assert_eq!(c.index, 0);
    }

    #[test]
    fn window_follows_the_cursor_and_only_covers_visible_rows() {
        let mut c = ListCursor::default();
        assert_eq!(c.window(10_000, 5), 0..5);
        c.move_by(7, 10_000);
        assert_eq!(c.window(10_000, 5), 3..8);
        c.move_by(-2, 10_000);
        assert_eq!(c.window(10_000, 5), 3..8);
        c.last(10_000);
        assert_eq!(c.window(10_000, 5), 9_995..10_000);
        c.move_by(5, 3);
        assert_eq!(c.index, 2);
        assert_eq!(c.window(3, 5), 0..3);
        assert_eq!(c.window(0, 5), 0..0);
    }
}
