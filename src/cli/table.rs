//! Plain aligned text tables for the terminal and for `grep`/`awk`.

/// Left-aligned columns separated by two spaces. The last column is not
/// padded, so lines carry no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| line(&widths, row))
        .collect()
}

fn line(widths: &[usize], cells: &[String]) -> String {
    let mut out = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            out.push_str(cell);
        } else {
            // `{:<w$}` pads by characters, so `On · 100 s` lines up too.
            out.push_str(&format!("{cell:<width$}  "));
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_by_characters_not_bytes() {
        let rows = vec![
            vec!["a".to_string(), "On · 5 s".to_string(), "x".to_string()],
            vec!["bbb".to_string(), "n/a".to_string(), "y".to_string()],
        ];
        assert_eq!(
            render(&["K", "WebSocket", "Z"], &rows),
            "K    WebSocket  Z\n\
             a    On · 5 s   x\n\
             bbb  n/a        y\n"
        );
    }
}
