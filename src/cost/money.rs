//! Rounding and formatting of amounts. Amounts are kept at full `f64` precision in every sum; they
//! are rounded to cents only here, when presented.

/// Rounds to cents, half away from zero.
///
/// Why the snap first: a decimal amount such as 1.005 is stored in binary as 1.00499999999999989…,
/// so a plain `(x * 100).round()` would give 1.00 where a person computing by hand gets 1.01. The
/// value is first snapped to a millionth of a cent, far below any price's precision but far above
/// `f64` noise at the amounts involved (< 10¹⁰), and then rounded.
pub fn round_cents(amount: f64) -> f64 {
    if !amount.is_finite() {
        return amount;
    }
    let cents = amount * 100.0;
    let snapped = (cents * 1e6).round() / 1e6;
    snapped.round() / 100.0
}

/// `1234567.891` → `1,234,567.89`: cents, comma thousands separators (the way the issue and the
/// printer column show amounts; the CLI's JSON carries plain numbers).
pub fn format_amount(amount: f64) -> String {
    let rounded = round_cents(amount);
    if !rounded.is_finite() {
        return rounded.to_string();
    }
    let negative = rounded < 0.0;
    // Whole cents as an integer, so the digits are exact.
    let cents = (rounded.abs() * 100.0).round() as u128;
    let units = (cents / 100).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!(
        "{}{}.{:02}",
        if negative && cents > 0 { "-" } else { "" },
        grouped,
        cents % 100
    )
}

/// `format_amount` followed by the currency: `6,120.45 CAD`.
pub fn format_money(amount: f64, currency: &str) -> String {
    format!("{} {}", format_amount(amount), currency)
}

/// The COST printer-column text: the actual cost once data moves (`1,203.55 CAD`), the estimate
/// before (`4,812.10 CAD (est.)`).
pub fn display(amount: f64, currency: &str, estimated: bool) -> String {
    if estimated {
        format!("{} (est.)", format_money(amount, currency))
    } else {
        format_money(amount, currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_cents_away_from_zero_despite_binary_noise() {
        assert_eq!(round_cents(1.005), 1.01);
        assert_eq!(round_cents(2.675), 2.68);
        assert_eq!(round_cents(1.004999), 1.0);
        assert_eq!(round_cents(-1.005), -1.01);
        assert_eq!(round_cents(0.0), 0.0);
    }

    #[test]
    fn formats_with_thousands_separators() {
        assert_eq!(format_amount(6120.454), "6,120.45");
        assert_eq!(format_amount(1234567.891), "1,234,567.89");
        assert_eq!(format_amount(999.999), "1,000.00");
        assert_eq!(format_amount(0.0), "0.00");
        assert_eq!(format_amount(12.5), "12.50");
        assert_eq!(format_amount(-1120.45), "-1,120.45");
        assert_eq!(format_amount(-0.001), "0.00");
    }

    #[test]
    fn display_marks_estimates() {
        assert_eq!(display(4812.1, "CAD", true), "4,812.10 CAD (est.)");
        assert_eq!(display(1203.55, "CAD", false), "1,203.55 CAD");
    }
}
