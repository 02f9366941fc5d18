//! The tables both command lines print (retrieval figures, the handoff queue, the
//! fleet's rollout, the daily report), on comfy-table: one look, no borders, the
//! first column flush left so a script can still take a row's first word.

use comfy_table::{CellAlignment, ContentLineStyle, LineStyle, Table, TableStyle};

/// Columns apart by spaces, the header underlined, no other lines.
const PLAIN: TableStyle = TableStyle::new()
    .header_lines(ContentLineStyle::none().junction(' '))
    .header_separator(LineStyle::none().fill('-').junction(' '))
    .content_lines(ContentLineStyle::none().junction(' '));

/// An empty table with `header`; the columns numbered in `right_aligned` (figures)
/// are set flush right.
pub fn new(header: &[&str], right_aligned: &[usize]) -> Table {
    let mut table = Table::new();
    table.load_style(PLAIN).set_header(header.to_vec());
    for &i in right_aligned {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_start_with_their_first_cell_and_figures_align_right() {
        let mut table = super::new(&["car", "version"], &[1]);
        table.add_row(vec!["car-1", "7"]);
        table.add_row(vec!["car-22", "12"]);
        let text = table.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[2].split_whitespace().next(), Some("car-1"), "{text}");
        let end = |l: &str| l.trim_end().len();
        assert_eq!(end(lines[2]), end(lines[3]), "figures not flush right:\n{text}");
    }
}
