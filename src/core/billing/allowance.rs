//! Plan allowances: the UTC calendar month a request falls in, and how a charge splits between
//! the month's allowance and the prepaid balance.
//!
//! A tenant on a plan gets `allowance` micro-units of credit at the start of every UTC calendar
//! month; unused allowance does not carry over. Requests draw from the allowance first and from
//! the balance for the rest ([`split`]). The same rule runs inside D1 (the reservation statement
//! and the `usage_charge` trigger in `schema/0003_ledger.sql`), where it is atomic; this module is
//! its reference and computes the period boundaries the edge binds into those statements.

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// The start (UTC ms) of the calendar month that contains `now_ms`.
pub fn month_start_ms(now_ms: u64) -> u64 {
    let days = now_ms / DAY_MS;
    let (year, month, _) = civil_from_days(days);
    days_from_civil(year, month, 1) * DAY_MS
}

/// The start (UTC ms) of the calendar month after the one that contains `now_ms`: when the
/// current allowance period ends.
pub fn next_month_start_ms(now_ms: u64) -> u64 {
    let (year, month, _) = civil_from_days(now_ms / DAY_MS);
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * DAY_MS
}

/// How a charge of `cost` splits when `allowance` is left: `(from_allowance, from_balance)`.
/// The allowance is used first.
pub fn split(cost: u64, allowance: u64) -> (u64, u64) {
    let from_allowance = cost.min(allowance);
    (from_allowance, cost - from_allowance)
}

/// Whether a tenant with `allowance` left and `balance` can reserve `amount`.
pub fn covers(amount: u64, allowance: u64, balance: u64) -> bool {
    allowance.saturating_add(balance) >= amount
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian (H. Hinnant's
/// algorithm, restricted to dates from 1970 on).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// (year ≥ 1970, month, day) to days since 1970-01-01.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-28T11:00:00Z and friends, from `date -u -d ... +%s%3N`.
    const NOV_28_2026: u64 = 1_795_863_600_000;
    const NOV_1_2026: u64 = 1_793_491_200_000;
    const DEC_1_2026: u64 = 1_796_083_200_000;
    const JAN_1_2027: u64 = 1_798_761_600_000;
    const FEB_29_2024_NOON: u64 = 1_709_208_000_000;
    const FEB_1_2024: u64 = 1_706_745_600_000;
    const MAR_1_2024: u64 = 1_709_251_200_000;

    #[test]
    fn month_boundaries() {
        assert_eq!(month_start_ms(NOV_28_2026), NOV_1_2026);
        assert_eq!(next_month_start_ms(NOV_28_2026), DEC_1_2026);
        assert_eq!(month_start_ms(DEC_1_2026), DEC_1_2026);
        assert_eq!(month_start_ms(DEC_1_2026 - 1), NOV_1_2026);
        assert_eq!(next_month_start_ms(DEC_1_2026), JAN_1_2027);
        assert_eq!(month_start_ms(FEB_29_2024_NOON), FEB_1_2024);
        assert_eq!(next_month_start_ms(FEB_29_2024_NOON), MAR_1_2024);
        assert_eq!(month_start_ms(0), 0);
        assert_eq!(next_month_start_ms(0), 31 * DAY_MS);
    }

    #[test]
    fn every_day_for_sixty_years_round_trips() {
        let mut previous = (1969, 12, 31);
        for days in 0..(60 * 366) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            // consecutive: either the next day or the first of the next month/year
            let (py, pm, pd) = previous;
            assert!(
                (y, m, d) == (py, pm, pd + 1)
                    || (d == 1
                        && ((y == py && m == pm + 1) || (y == py + 1 && m == 1 && pm == 12)))
            );
            previous = (y, m, d);
            let start = month_start_ms(days * DAY_MS + 12 * 3_600_000);
            assert_eq!(start, days_from_civil(y, m, 1) * DAY_MS);
            assert!(next_month_start_ms(days * DAY_MS) > days * DAY_MS);
        }
    }

    #[test]
    fn allowance_first() {
        assert_eq!(split(100, 0), (0, 100));
        assert_eq!(split(100, 30), (30, 70));
        assert_eq!(split(100, 100), (100, 0));
        assert_eq!(split(100, 500), (100, 0));
        assert!(covers(100, 30, 70));
        assert!(!covers(100, 30, 69));
        assert!(covers(u64::MAX, u64::MAX, u64::MAX));
    }
}
