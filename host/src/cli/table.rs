//! Plain-text tables for the terminal: each column as wide as its widest cell, so that a long
//! function name or id moves the columns after it instead of running into them.

use std::io::Write;

/// Which side of its column a cell keeps to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A table: a header row, then rows, written once all are known.
pub struct Table {
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns: (header, alignment).
    pub fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            aligns: columns.iter().map(|(_, align)| *align).collect(),
            rows: vec![columns.iter().map(|(header, _)| header.to_string()).collect()],
        }
    }

    /// Add a row: one cell per column.
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        let mut cells: Vec<String> = cells.into_iter().collect();
        cells.resize(self.aligns.len(), String::new());
        self.rows.push(cells);
    }

    /// Write the header and the rows: columns two spaces apart, no space at the end of a line.
    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let widths: Vec<usize> = (0..self.aligns.len())
            .map(|column| self.rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0))
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                let (width, last) = (widths[column], column + 1 == row.len());
                if column > 0 {
                    line.push_str("  ");
                }
                match self.aligns[column] {
                    Align::Right => line.push_str(&format!("{cell:>width$}")),
                    Align::Left if last => line.push_str(cell),
                    Align::Left => line.push_str(&format!("{cell:<width$}")),
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(table: &Table) -> String {
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[("ID", Align::Left), ("FUNCTION", Align::Left), ("MS", Align::Right)]);
        table.row(["1".to_string(), "a-very-long-app/a-very-long-function.export".into(), "7".into()]);
        table.row(["22".to_string(), "f".into(), "1234".into()]);
        assert_eq!(
            written(&table),
            "ID  FUNCTION                                       MS\n\
             1   a-very-long-app/a-very-long-function.export     7\n\
             22  f                                            1234\n"
        );
    }

    #[test]
    fn short_rows_are_padded_and_lines_have_no_trailing_space() {
        let mut table = Table::new(&[("A", Align::Left), ("B", Align::Left), ("C", Align::Left)]);
        table.row(["x".to_string()]);
        table.row(["é".to_string(), "yy".into(), String::new()]);
        let text = written(&table);
        assert_eq!(text, "A  B   C\nx\né  yy\n");
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text:?}");
    }
}
