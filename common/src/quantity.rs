//! Resource quantities (`resource.Quantity` upstream): fixed-point numbers such as `100m`,
//! `1.5Gi` or `1e3`, parsed and serialised exactly as apimachinery does.
//!
//! A quantity remembers which of the three notations it was written in (decimal SI suffixes,
//! binary SI suffixes or a decimal exponent) and is written back in the canonical form of that
//! notation: the largest suffix that needs no fractional digits. Values are never held as
//! floating point: parsing rounds up (away from zero) to whole nano-units, and binary-suffixed
//! values are capped at 2^63-1, as upstream.
//!
//! Two later upstream fixes are included because the v1.33 behaviour silently corrupts values:
//! a decimal quantity beyond the `E` suffix (or below `n`) is written in exponent notation
//! instead of losing its suffix, and an exponent outside the 32-bit range is rejected instead
//! of being truncated.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{Signed, ToPrimitive, Zero};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The notation a quantity is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// `12e6`
    DecimalExponent,
    /// `12Mi` (12 * 2^20)
    BinarySI,
    /// `12M` (12 * 10^6)
    #[default]
    DecimalSI,
}

impl Format {
    /// Upstream's name for the format.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::DecimalExponent => "DecimalExponent",
            Format::BinarySI => "BinarySI",
            Format::DecimalSI => "DecimalSI",
        }
    }
}

/// Why a string is not a quantity. Messages are upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// A fixed-point quantity: `mantissa * 10^exponent`, kept normalised (no trailing zero digits
/// in the mantissa, exponent 0 for zero) so equal values have equal representations.
#[derive(Debug, Clone, Default)]
pub struct Quantity {
    mantissa: BigInt,
    exponent: i64,
    format: Format,
    /// The text as parsed, when upstream would write it back verbatim (it keeps the input
    /// whenever the input already looks canonical, quirks such as a leading `+` included).
    original: Option<String>,
}

/// The smallest unit quantities are rounded to when parsed: 10^-9.
const NANO: i64 = -9;

/// Exponent gap beyond which adding two quantities would need an absurd number of digits.
/// Real quantities span fewer than 30 orders of magnitude.
const MAX_ALIGN_DIGITS: i64 = 10_000;

/// Binary canonicalisation materialises the integer value; a value with 70 or more trailing
/// decimal zeros is divisible by 2^70 and so lies beyond the largest binary suffix anyway.
const MAX_BINARY_EXPONENT: i64 = 70;

/// The largest multiple of three the parser accepts as an exponent; larger ones are written
/// with extra zero digits instead so the text stays parseable.
const MAX_WRITTEN_EXPONENT: i64 = i32::MAX as i64 - 1;

const BINARY_SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

fn pow10(k: u64) -> BigUint {
    BigUint::from(10u32).pow(u32::try_from(k).unwrap_or(u32::MAX))
}

fn pow10_signed(k: u64) -> BigInt {
    BigInt::from(pow10(k))
}

/// Number of decimal digits of `m` (1 for zero), without formatting it.
fn decimal_digits(m: &BigUint) -> u64 {
    if let Some(v) = m.to_u128() {
        return if v == 0 { 1 } else { u64::from(v.ilog10()) + 1 };
    }
    // Start from the digit count of 2^(bits-1) and correct it, so no float error can matter.
    let bits = m.bits();
    let mut d = ((bits - 1) as f64 * std::f64::consts::LOG10_2) as u64 + 1;
    while d > 1 && *m < pow10(d - 1) {
        d -= 1;
    }
    while *m >= pow10(d) {
        d += 1;
    }
    d
}

fn signum(m: &BigInt) -> BigInt {
    match m.sign() {
        Sign::Minus => BigInt::from(-1),
        Sign::NoSign => BigInt::zero(),
        Sign::Plus => BigInt::from(1),
    }
}

/// Moves trailing zero digits of the mantissa into the exponent.
fn normalize(mut m: BigInt, mut e: i64) -> (BigInt, i64) {
    if m.is_zero() {
        return (m, 0);
    }
    while (&m % 10u32).is_zero() {
        m /= 10u32;
        e += 1;
    }
    (m, e)
}

/// `m / 10^k` rounded away from zero, and whether that was exact.
fn div_pow10_away(m: &BigInt, k: u64) -> (BigInt, bool) {
    if k == 0 || m.is_zero() {
        return (m.clone(), true);
    }
    // |m| < 10^digits <= 10^k: the quotient is 0 with a non-zero remainder.
    if k >= decimal_digits(m.magnitude()) {
        return (signum(m), false);
    }
    let p = pow10_signed(k);
    let q = m / &p;
    if (m % &p).is_zero() {
        (q, true)
    } else {
        (q + signum(m), false)
    }
}

fn cmp_magnitude(a: &BigUint, ae: i64, b: &BigUint, be: i64) -> Ordering {
    match (a.is_zero(), b.is_zero()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    // Compare the positions of the leading digits first; only equal positions need an exact
    // comparison, and then the exponents differ by at most the mantissa lengths.
    let lead_a = decimal_digits(a) as i64 + ae;
    let lead_b = decimal_digits(b) as i64 + be;
    if lead_a != lead_b {
        return lead_a.cmp(&lead_b);
    }
    if ae >= be {
        (a * pow10((ae - be) as u64)).cmp(b)
    } else {
        a.cmp(&(b * pow10((be - ae) as u64)))
    }
}

fn cmp_parts(a: &BigInt, ae: i64, b: &BigInt, be: i64) -> Ordering {
    let (sa, sb) = (a.sign(), b.sign());
    if sa != sb {
        return sa.cmp(&sb);
    }
    let mag = cmp_magnitude(a.magnitude(), ae, b.magnitude(), be);
    if sa == Sign::Minus {
        mag.reverse()
    } else {
        mag
    }
}

fn add_parts(a: &BigInt, ae: i64, b: &BigInt, be: i64) -> (BigInt, i64) {
    if a.is_zero() {
        return (b.clone(), be);
    }
    if b.is_zero() {
        return (a.clone(), ae);
    }
    let (hi, hi_e, lo, lo_e) = if ae >= be {
        (a, ae, b, be)
    } else {
        (b, be, a, ae)
    };
    let shift = hi_e.saturating_sub(lo_e);
    if shift > MAX_ALIGN_DIGITS {
        // The exact sum would need more than MAX_ALIGN_DIGITS digits; the smaller operand is
        // that many orders of magnitude below the other, so keep the dominant one.
        return match cmp_magnitude(a.magnitude(), ae, b.magnitude(), be) {
            Ordering::Less => (b.clone(), be),
            _ => (a.clone(), ae),
        };
    }
    normalize(hi * pow10_signed(shift as u64) + lo, lo_e)
}

struct Scanned<'a> {
    positive: bool,
    /// Integer digits without leading zeros ("0" when there are none).
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
    /// Whether any digit at all was written; upstream's slow path rejects digitless input.
    has_digits: bool,
}

fn scan(s: &str) -> Result<Scanned<'_>, QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos = 1;
        }
        Some(b'+') => pos = 1,
        _ => {}
    }
    let digits_start = pos;
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    let mut out = Scanned {
        positive,
        num: "0",
        denom: "",
        suffix: "",
        has_digits: pos > digits_start,
    };
    if pos >= end {
        return Ok(out);
    }

    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos > num_start {
        out.num = &s[num_start..pos];
        out.has_digits = true;
    }
    if pos >= end {
        return Ok(out);
    }

    if b[pos] == b'.' {
        pos += 1;
        let denom_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        out.denom = &s[denom_start..pos];
        out.has_digits |= !out.denom.is_empty();
        if pos >= end {
            return Ok(out);
        }
    }

    // The suffix is validated later; here it is only delimited: suffix letters, then an
    // optional sign and digits for an exponent.
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && matches!(b[pos], b'-' | b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::FormatWrong);
    }
    out.suffix = &s[suffix_start..];
    Ok(out)
}

/// Suffix to (base, exponent, format).
fn interpret_suffix(suffix: &str) -> Option<(u32, i64, Format)> {
    let decimal = |e| Some((10, e, Format::DecimalSI));
    let binary = |e| Some((2, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exponent: i64 = s[1..].parse().ok()?;
            // Upstream stores exponents as int32 and negates them, so only this range is
            // meaningful.
            let limit = i64::from(i32::MAX);
            (-limit..=limit)
                .contains(&exponent)
                .then_some((10, exponent, Format::DecimalExponent))
        }
        _ => None,
    }
}

impl Quantity {
    fn from_parts(mantissa: BigInt, exponent: i64, format: Format) -> Self {
        let (mantissa, exponent) = normalize(mantissa, exponent);
        Quantity {
            mantissa,
            exponent,
            format,
            original: None,
        }
    }

    /// `value` in the given format (`resource.NewQuantity`).
    pub fn new(value: i64, format: Format) -> Self {
        Self::from_parts(BigInt::from(value), 0, format)
    }

    /// `value / 1000` in the given format (`resource.NewMilliQuantity`).
    pub fn new_milli(value: i64, format: Format) -> Self {
        Self::from_parts(BigInt::from(value), -3, format)
    }

    /// `value * 10^scale` in decimal SI format (`resource.NewScaledQuantity`).
    pub fn new_scaled(value: i64, scale: i32) -> Self {
        Self::from_parts(BigInt::from(value), i64::from(scale), Format::DecimalSI)
    }

    /// Parses a quantity string (`resource.ParseQuantity`). No whitespace is allowed.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::FormatWrong);
        }
        if s == "0" {
            return Ok(Quantity {
                original: Some(s.to_string()),
                ..Quantity::default()
            });
        }
        let sc = scan(s)?;
        let (base, exponent, mut format) =
            interpret_suffix(sc.suffix).ok_or(QuantityError::Suffix)?;
        let denom_len = sc.denom.len() as i64;

        // Upstream has an int64 fast path; only inputs it handles can keep their original text,
        // and only inputs it does not handle can hit its "no digits" error.
        let (fast_path, keep_text) = match format {
            Format::DecimalSI | Format::DecimalExponent => {
                let scale = exponent - denom_len;
                let fast = sc.num.len() + sc.denom.len() <= 18 && scale >= NANO;
                let keep = fast && scale % 3 == 0 && {
                    let shifted = format!("{}{}", sc.num, sc.denom);
                    !shifted.ends_with("000") && !shifted.starts_with('0')
                };
                (fast, keep)
            }
            Format::BinarySI => {
                let precision = 15 - sc.num.len() as i64 - exponent * 3 / 10 - 1;
                match sc.num.parse::<i64>() {
                    Ok(value) if sc.denom.is_empty() && precision >= 0 => {
                        match value.checked_mul(1i64 << exponent) {
                            Some(_) => (true, value & 0x07 != 0),
                            None => (false, false),
                        }
                    }
                    _ => (false, false),
                }
            }
        };
        if !fast_path && !sc.has_digits {
            return Err(QuantityError::Numeric);
        }

        let digits = format!("{}{}", sc.num, sc.denom);
        let significant = digits.trim_end_matches('0');
        let trailing_zeros = (digits.len() - significant.len()) as i64;
        let mut mantissa = if significant.is_empty() {
            BigInt::zero()
        } else {
            significant
                .parse::<BigInt>()
                .map_err(|_| QuantityError::Numeric)?
        };
        let mut exp10 = trailing_zeros - denom_len;
        if base == 10 {
            exp10 += exponent;
        } else {
            mantissa <<= exponent as usize;
        }
        if !sc.positive {
            mantissa = -mantissa;
        }
        let (mut mantissa, mut exp10) = normalize(mantissa, exp10);

        // Non-zero amounts below a nano-unit round up to one, on the theory that a request for
        // some resource should get some.
        if exp10 < NANO {
            let (rounded, _) = div_pow10_away(&mantissa, (NANO - exp10) as u64);
            (mantissa, exp10) = normalize(rounded, NANO);
        }

        if format == Format::BinarySI {
            let max = BigUint::from(i64::MAX as u64);
            if cmp_magnitude(mantissa.magnitude(), exp10, &max, 0) == Ordering::Greater {
                mantissa = BigInt::from_biguint(mantissa.sign(), max);
                exp10 = 0;
            }
            let one = BigUint::from(1u32);
            if !mantissa.is_zero()
                && cmp_magnitude(mantissa.magnitude(), exp10, &one, 0) == Ordering::Less
            {
                format = Format::DecimalSI;
            }
        }

        Ok(Quantity {
            mantissa,
            exponent: exp10,
            format,
            original: keep_text.then(|| s.to_string()),
        })
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Changes the notation used when writing the quantity out.
    pub fn set_format(&mut self, format: Format) {
        self.format = format;
        self.original = None;
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa.is_zero()
    }

    /// -1, 0 or 1.
    pub fn sign(&self) -> i32 {
        match self.mantissa.sign() {
            Sign::Minus => -1,
            Sign::NoSign => 0,
            Sign::Plus => 1,
        }
    }

    /// Compares with an integer.
    pub fn cmp_i64(&self, value: i64) -> Ordering {
        cmp_parts(&self.mantissa, self.exponent, &BigInt::from(value), 0)
    }

    /// `ceil(self / 10^scale)`, rounding away from zero, saturating at the `i64` bounds
    /// (`Quantity.ScaledValue`).
    pub fn scaled_value(&self, scale: i32) -> i64 {
        let saturated = || {
            if self.mantissa.is_negative() {
                i64::MIN
            } else {
                i64::MAX
            }
        };
        if self.mantissa.is_zero() {
            return 0;
        }
        let shift = self.exponent - i64::from(scale);
        let scaled = if shift >= 0 {
            if decimal_digits(self.mantissa.magnitude()) as i64 + shift > 20 {
                return saturated();
            }
            &self.mantissa * pow10_signed(shift as u64)
        } else {
            div_pow10_away(&self.mantissa, shift.unsigned_abs()).0
        };
        scaled.to_i64().unwrap_or_else(saturated)
    }

    /// The value rounded away from zero to an integer, saturating (`Quantity.Value`).
    pub fn value(&self) -> i64 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded away from zero, saturating (`Quantity.MilliValue`).
    pub fn milli_value(&self) -> i64 {
        self.scaled_value(-3)
    }

    /// The value if it is an integer that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        if self.exponent < 0 {
            return None;
        }
        if decimal_digits(self.mantissa.magnitude()) as i64 + self.exponent > 20 {
            return None;
        }
        (&self.mantissa * pow10_signed(self.exponent as u64)).to_i64()
    }

    /// The nearest `f64` (infinite when out of range).
    pub fn as_f64(&self) -> f64 {
        format!("{}e{}", self.mantissa, self.exponent)
            .parse()
            .unwrap_or(0.0)
    }

    /// Rounds away from zero to a multiple of `10^scale`; returns whether no precision was
    /// lost (`Quantity.RoundUp`).
    pub fn round_up(&mut self, scale: i32) -> bool {
        let scale = i64::from(scale);
        if self.exponent >= scale {
            return true;
        }
        let (rounded, exact) = div_pow10_away(&self.mantissa, (scale - self.exponent) as u64);
        (self.mantissa, self.exponent) = normalize(rounded, scale);
        self.original = None;
        exact
    }

    /// Adds `other` in place; a zero receiver takes `other`'s format (`Quantity.Add`).
    pub fn add_assign_ref(&mut self, other: &Quantity) {
        if self.is_zero() {
            self.format = other.format;
        }
        (self.mantissa, self.exponent) = add_parts(
            &self.mantissa,
            self.exponent,
            &other.mantissa,
            other.exponent,
        );
        self.original = None;
    }

    /// Subtracts `other` in place; a zero receiver takes `other`'s format (`Quantity.Sub`).
    pub fn sub_assign_ref(&mut self, other: &Quantity) {
        if self.is_zero() {
            self.format = other.format;
        }
        let negated = -&other.mantissa;
        (self.mantissa, self.exponent) =
            add_parts(&self.mantissa, self.exponent, &negated, other.exponent);
        self.original = None;
    }

    /// The canonical text, ignoring any remembered original text.
    pub fn canonical_string(&self) -> String {
        if self.mantissa.is_zero() {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = cmp_magnitude(
                self.mantissa.magnitude(),
                self.exponent,
                &BigUint::from(1024u32),
                0,
            ) == Ordering::Less;
            // Fractions cannot be written with binary suffixes without rounding, so they
            // switch to decimal rather than lose precision.
            if small || self.exponent < 0 {
                format = Format::DecimalSI;
            }
        }
        if format != Format::BinarySI {
            return self.decimal_string(format);
        }
        if self.exponent >= MAX_BINARY_EXPONENT {
            return self.decimal_string(Format::DecimalExponent);
        }
        let mut value = &self.mantissa * pow10_signed(self.exponent as u64);
        let mut power = 0;
        while value.magnitude() >= &BigUint::from(1024u32) && (&value % 1024u32).is_zero() {
            value /= 1024u32;
            power += 1;
        }
        match power {
            0 => value.to_string(),
            1..=6 => format!("{value}{}", BINARY_SUFFIXES[power - 1]),
            // Past `Ei` there is no binary suffix; exponent notation keeps the value exact.
            _ => self.decimal_string(Format::DecimalExponent),
        }
    }

    /// Mantissa and an exponent that is a multiple of three, with the matching suffix.
    fn decimal_string(&self, format: Format) -> String {
        let mut digits = self.mantissa.magnitude().to_string();
        let mut pad = self.exponent.rem_euclid(3);
        if self.exponent - pad > MAX_WRITTEN_EXPONENT
            && self.exponent - MAX_WRITTEN_EXPONENT <= MAX_ALIGN_DIGITS
        {
            pad = self.exponent - MAX_WRITTEN_EXPONENT;
        }
        for _ in 0..pad {
            digits.push('0');
        }
        let exponent = self.exponent - pad;
        let suffix = match (format, exponent) {
            (Format::DecimalSI, -9) => "n".to_string(),
            (Format::DecimalSI, -6) => "u".to_string(),
            (Format::DecimalSI, -3) => "m".to_string(),
            (_, 0) => String::new(),
            (Format::DecimalSI, 3) => "k".to_string(),
            (Format::DecimalSI, 6) => "M".to_string(),
            (Format::DecimalSI, 9) => "G".to_string(),
            (Format::DecimalSI, 12) => "T".to_string(),
            (Format::DecimalSI, 15) => "P".to_string(),
            (Format::DecimalSI, 18) => "E".to_string(),
            (_, e) => format!("e{e}"),
        };
        let sign = if self.mantissa.is_negative() { "-" } else { "" };
        format!("{sign}{digits}{suffix}")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.original {
            Some(text) => f.write_str(text),
            None => f.write_str(&self.canonical_string()),
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

/// Equality is by value, as upstream's `Equal`: `1000m == 1`, whatever the formats.
impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        // Both sides are normalised, so equal values have identical parts.
        self.mantissa == other.mantissa && self.exponent == other.exponent
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.mantissa.hash(state);
        self.exponent.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_parts(
            &self.mantissa,
            self.exponent,
            &other.mantissa,
            other.exponent,
        )
    }
}

impl Neg for Quantity {
    type Output = Quantity;

    fn neg(mut self) -> Quantity {
        self.mantissa = -self.mantissa;
        self.original = None;
        self
    }
}

impl Neg for &Quantity {
    type Output = Quantity;

    fn neg(self) -> Quantity {
        -self.clone()
    }
}

impl AddAssign<&Quantity> for Quantity {
    fn add_assign(&mut self, rhs: &Quantity) {
        self.add_assign_ref(rhs);
    }
}

impl AddAssign for Quantity {
    fn add_assign(&mut self, rhs: Quantity) {
        self.add_assign_ref(&rhs);
    }
}

impl SubAssign<&Quantity> for Quantity {
    fn sub_assign(&mut self, rhs: &Quantity) {
        self.sub_assign_ref(rhs);
    }
}

impl SubAssign for Quantity {
    fn sub_assign(&mut self, rhs: Quantity) {
        self.sub_assign_ref(&rhs);
    }
}

impl Add for Quantity {
    type Output = Quantity;

    fn add(mut self, rhs: Quantity) -> Quantity {
        self.add_assign_ref(&rhs);
        self
    }
}

impl Add<&Quantity> for &Quantity {
    type Output = Quantity;

    fn add(self, rhs: &Quantity) -> Quantity {
        let mut out = self.clone();
        out.add_assign_ref(rhs);
        out
    }
}

impl Sub for Quantity {
    type Output = Quantity;

    fn sub(mut self, rhs: Quantity) -> Quantity {
        self.sub_assign_ref(&rhs);
        self
    }
}

impl Sub<&Quantity> for &Quantity {
    type Output = Quantity;

    fn sub(self, rhs: &Quantity) -> Quantity {
        let mut out = self.clone();
        out.sub_assign_ref(rhs);
        out
    }
}

impl Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::default(), |acc, q| acc + q)
    }
}

impl<'a> Sum<&'a Quantity> for Quantity {
    fn sum<I: Iterator<Item = &'a Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::default(), |mut acc, q| {
            acc.add_assign_ref(q);
            acc
        })
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts a string (surrounding whitespace trimmed, as upstream), a JSON number (parsed from
/// its decimal text) or `null` (zero).
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct QuantityVisitor;

        impl QuantityVisitor {
            fn parse<E: de::Error>(text: &str) -> Result<Quantity, E> {
                Quantity::parse(text.trim()).map_err(E::custom)
            }
        }

        impl<'v> Visitor<'v> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity string such as \"100m\" or \"1Gi\", or a number")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Self::parse(v)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Self::parse(&v.to_string())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Self::parse(&v.to_string())
            }

            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
                Self::parse(&v.to_string())
            }

            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
                Self::parse(&v.to_string())
            }

            // Rust's shortest round-trip formatting never uses exponent notation, so `1e3`
            // arrives as "1000"; the value is right, only the remembered notation differs.
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Self::parse(&v.to_string())
            }

            fn visit_unit<E: de::Error>(self) -> Result<Quantity, E> {
                Ok(Quantity::default())
            }

            fn visit_none<E: de::Error>(self) -> Result<Quantity, E> {
                Ok(Quantity::default())
            }

            fn visit_some<D: Deserializer<'v>>(self, d: D) -> Result<Quantity, D::Error> {
                d.deserialize_any(QuantityVisitor)
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    /// `m * 10^e` in the given format, built without parsing.
    fn dec(m: i128, e: i64, format: Format) -> Quantity {
        Quantity::from_parts(BigInt::from(m), e, format)
    }

    const FORMAT_ERR: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

    #[test]
    fn parse_values_and_formats() {
        use Format::*;
        let max = i64::MAX as i128;
        let table: Vec<(&str, Quantity)> = vec![
            ("0", dec(0, 0, DecimalSI)),
            ("0n", dec(0, 0, DecimalSI)),
            ("0u", dec(0, 0, DecimalSI)),
            ("0m", dec(0, 0, DecimalSI)),
            ("0Ki", dec(0, 0, BinarySI)),
            ("0k", dec(0, 0, DecimalSI)),
            ("0Mi", dec(0, 0, BinarySI)),
            ("0M", dec(0, 0, DecimalSI)),
            ("0Gi", dec(0, 0, BinarySI)),
            ("0G", dec(0, 0, DecimalSI)),
            ("0Ti", dec(0, 0, BinarySI)),
            ("0T", dec(0, 0, DecimalSI)),
            ("1", dec(1, 0, DecimalSI)),
            ("1Ki", dec(1024, 0, BinarySI)),
            ("8Ki", dec(8 * 1024, 0, BinarySI)),
            ("7Mi", dec(7 << 20, 0, BinarySI)),
            ("6Gi", dec(6 << 30, 0, BinarySI)),
            ("5Ti", dec(5 << 40, 0, BinarySI)),
            ("4Pi", dec(4 << 50, 0, BinarySI)),
            ("3Ei", dec(3 << 60, 0, BinarySI)),
            ("10Ti", dec(10 << 40, 0, BinarySI)),
            ("100Ti", dec(100 << 40, 0, BinarySI)),
            ("5n", dec(5, -9, DecimalSI)),
            ("4u", dec(4, -6, DecimalSI)),
            ("3m", dec(3, -3, DecimalSI)),
            ("9", dec(9, 0, DecimalSI)),
            ("8k", dec(8, 3, DecimalSI)),
            ("50k", dec(5, 4, DecimalSI)),
            ("7M", dec(7, 6, DecimalSI)),
            ("6G", dec(6, 9, DecimalSI)),
            ("5T", dec(5, 12, DecimalSI)),
            ("40T", dec(4, 13, DecimalSI)),
            ("300T", dec(3, 14, DecimalSI)),
            ("2P", dec(2, 15, DecimalSI)),
            ("1E", dec(1, 18, DecimalSI)),
            ("1E-3", dec(1, -3, DecimalExponent)),
            ("1e3", dec(1, 3, DecimalExponent)),
            ("1E6", dec(1, 6, DecimalExponent)),
            ("1e9", dec(1, 9, DecimalExponent)),
            ("1E12", dec(1, 12, DecimalExponent)),
            ("1e15", dec(1, 15, DecimalExponent)),
            ("1E18", dec(1, 18, DecimalExponent)),
            ("1e14", dec(1, 14, DecimalExponent)),
            ("1e13", dec(1, 13, DecimalExponent)),
            ("100.035k", dec(100035, 0, DecimalSI)),
            ("0.001", dec(1, -3, DecimalSI)),
            ("0.0005k", dec(5, -1, DecimalSI)),
            ("0.005", dec(5, -3, DecimalSI)),
            ("0.05", dec(5, -2, DecimalSI)),
            ("0.5", dec(5, -1, DecimalSI)),
            ("0.00050k", dec(5, -1, DecimalSI)),
            ("0.00500", dec(5, -3, DecimalSI)),
            ("0.05000", dec(5, -2, DecimalSI)),
            ("0.50000", dec(5, -1, DecimalSI)),
            ("0.5e0", dec(5, -1, DecimalExponent)),
            ("0.5e-1", dec(5, -2, DecimalExponent)),
            ("0.5e-2", dec(5, -3, DecimalExponent)),
            ("10.035M", dec(10035, 3, DecimalSI)),
            ("1.2e3", dec(12, 2, DecimalExponent)),
            ("1.3E+6", dec(13, 5, DecimalExponent)),
            ("1.40e9", dec(14, 8, DecimalExponent)),
            ("1.53E12", dec(153, 10, DecimalExponent)),
            ("1.6e15", dec(16, 14, DecimalExponent)),
            ("1.7E18", dec(17, 17, DecimalExponent)),
            ("9.01", dec(901, -2, DecimalSI)),
            ("8.1k", dec(81, 2, DecimalSI)),
            ("7.123456M", dec(7123456, 0, DecimalSI)),
            ("6.987654321G", dec(6987654321, 0, DecimalSI)),
            ("5.444T", dec(5444, 9, DecimalSI)),
            ("40.1T", dec(401, 11, DecimalSI)),
            ("300.2T", dec(3002, 11, DecimalSI)),
            ("2.5P", dec(25, 14, DecimalSI)),
            ("1.01E", dec(101, 16, DecimalSI)),
            // Rounded up to whole nano-units, or capped.
            ("3.001n", dec(4, -9, DecimalSI)),
            ("1.1E-9", dec(2, -9, DecimalExponent)),
            ("0.0000000001", dec(1, -9, DecimalSI)),
            ("0.0000000005", dec(1, -9, DecimalSI)),
            ("0.00000000050", dec(1, -9, DecimalSI)),
            ("0.5e-9", dec(1, -9, DecimalExponent)),
            ("0.9n", dec(1, -9, DecimalSI)),
            ("0.00000012345", dec(124, -9, DecimalSI)),
            ("0.00000012354", dec(124, -9, DecimalSI)),
            ("9Ei", dec(max, 0, BinarySI)),
            ("9223372036854775807Ki", dec(max, 0, BinarySI)),
            ("12E", dec(12, 18, DecimalSI)),
            // Fractional binary values.
            ("100.035Ki", dec(10243584, -2, BinarySI)),
            ("0.5Mi", dec(512 * 1024, 0, BinarySI)),
            ("0.05Gi", dec(536870912, -1, BinarySI)),
            ("0.025Ti", dec(274877906944, -1, BinarySI)),
            // Odd but accepted spellings.
            ("0.000000000001Ki", dec(2, -9, DecimalSI)),
            (".001", dec(1, -3, DecimalSI)),
            (".0001k", dec(100, -3, DecimalSI)),
            ("1.", dec(1, 0, DecimalSI)),
            ("1.G", dec(1, 9, DecimalSI)),
            (".", dec(0, 0, DecimalSI)),
            ("m", dec(0, 0, DecimalSI)),
            ("00", dec(0, 0, DecimalSI)),
            ("007", dec(7, 0, DecimalSI)),
            ("1e2147483647", dec(1, 2147483647, DecimalExponent)),
            (
                "123456789012345678901234567890",
                dec(123456789012345678901234567890, 0, DecimalSI),
            ),
        ];
        for (input, want) in &table {
            let got = q(input);
            assert_eq!(&got, want, "{input}: got {got}");
            assert_eq!(got.format(), want.format(), "{input}");

            // The same with an explicit sign.
            let neg = q(&format!("-{input}"));
            assert_eq!(neg, -want, "-{input}");
            assert_eq!(neg.format(), want.format(), "-{input}");
            let pos = q(&format!("+{input}"));
            assert_eq!(&pos, want, "+{input}");
            assert_eq!(pos.format(), want.format(), "+{input}");
        }
        // A bare sign is zero, but cannot take a second sign.
        assert!(q("-").is_zero());
        assert!(q("+").is_zero());
        assert_eq!(Quantity::parse("--"), Err(QuantityError::Suffix));
    }

    #[test]
    fn parse_errors() {
        let cases = [
            ("", QuantityError::FormatWrong),
            ("1.1.M", QuantityError::FormatWrong),
            ("1+1.0M", QuantityError::FormatWrong),
            ("0.1mi", QuantityError::Suffix),
            ("0.1am", QuantityError::FormatWrong),
            ("aoeu", QuantityError::FormatWrong),
            (".5i", QuantityError::Suffix),
            ("1i", QuantityError::Suffix),
            ("-3.01i", QuantityError::Suffix),
            ("-3.01e-", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1ee3", QuantityError::Suffix),
            ("1K", QuantityError::Suffix),
            ("1kb", QuantityError::FormatWrong),
            ("1e3m", QuantityError::FormatWrong),
            ("1e4294967297", QuantityError::Suffix),
            ("1e2147483648", QuantityError::Suffix),
            ("1e-2147483648", QuantityError::Suffix),
            ("1e99999999999999999999", QuantityError::Suffix),
            (" 1", QuantityError::FormatWrong),
            ("1 ", QuantityError::FormatWrong),
            ("1,5", QuantityError::FormatWrong),
            ("1Ki ", QuantityError::FormatWrong),
            ("é", QuantityError::FormatWrong),
            ("1é", QuantityError::FormatWrong),
            ("--1", QuantityError::Suffix),
            // Digitless input the fast path would not take is rejected as upstream does.
            (".e-10", QuantityError::Numeric),
            ("-.Pi", QuantityError::Numeric),
        ];
        for (input, want) in cases {
            assert_eq!(Quantity::parse(input), Err(want), "{input:?}");
        }
        assert_eq!(QuantityError::FormatWrong.to_string(), FORMAT_ERR);
        assert_eq!(
            QuantityError::Numeric.to_string(),
            "unable to parse numeric part of quantity"
        );
        assert_eq!(
            QuantityError::Suffix.to_string(),
            "unable to parse quantity's suffix"
        );
    }

    #[test]
    fn canonical_strings() {
        use Format::*;
        // (value, canonical, a non-canonical spelling of the same value or "")
        let table = [
            (dec(1 << 30, 0, BinarySI), "1Gi", "1024Mi"),
            (dec(300 << 20, 0, BinarySI), "300Mi", "307200Ki"),
            (dec(6 * 1024, 0, BinarySI), "6Ki", ""),
            (dec(1001 << 30, 0, BinarySI), "1001Gi", "1025024Mi"),
            (dec(1 << 40, 0, BinarySI), "1Ti", "1024Gi"),
            (dec(5, 0, BinarySI), "5", "5000m"),
            (dec(500, -3, BinarySI), "500m", "0.5"),
            (dec(1, 9, DecimalSI), "1G", "1000M"),
            (dec(1000, 6, DecimalSI), "1G", "0.001T"),
            (dec(1000000, 3, DecimalSI), "1G", ""),
            (dec(1000000000, 0, DecimalSI), "1G", ""),
            (dec(1, -3, DecimalSI), "1m", "1000u"),
            (dec(80, -3, DecimalSI), "80m", ""),
            (dec(1080, -3, DecimalSI), "1080m", "1.08"),
            (dec(108, -2, DecimalSI), "1080m", "1080000000n"),
            (dec(10800, -4, DecimalSI), "1080m", ""),
            (dec(300, 6, DecimalSI), "300M", ""),
            (dec(1, 12, DecimalSI), "1T", ""),
            (dec(1, 18, DecimalSI), "1E", ""),
            (dec(1, 21, DecimalSI), "1e21", "1000E"),
            (dec(5, 21, DecimalSI), "5e21", "5000E"),
            (dec(1, 24, DecimalSI), "1e24", "1000000E"),
            (dec(1, 70, BinarySI), "10e69", ""),
            (dec(2, 70, BinarySI), "20e69", ""),
            (dec(1, 72, BinarySI), "1e72", ""),
            (dec(1234567, 6, DecimalSI), "1234567M", ""),
            (dec(1234567, -3, BinarySI), "1234567m", ""),
            (dec(3, 3, DecimalSI), "3k", ""),
            (dec(1025, 0, BinarySI), "1025", ""),
            (dec(0, 0, DecimalSI), "0", ""),
            (dec(0, 0, BinarySI), "0", ""),
            (dec(1, 9, DecimalExponent), "1e9", ".001e12"),
            (dec(1, -3, DecimalExponent), "1e-3", "0.001e0"),
            (dec(1, -9, DecimalExponent), "1e-9", "1000e-12"),
            (dec(80, -3, DecimalExponent), "80e-3", ""),
            (dec(300, 6, DecimalExponent), "300e6", ""),
            (dec(1, 12, DecimalExponent), "1e12", ""),
            (dec(1, 3, DecimalExponent), "1e3", ""),
            (dec(3, 3, DecimalExponent), "3e3", ""),
            (dec(3, 3, DecimalSI), "3k", ""),
            (dec(0, 0, DecimalExponent), "0", "00"),
            (dec(1, -9, DecimalSI), "1n", ""),
            (dec(80, -9, DecimalSI), "80n", ""),
            (dec(1080, -9, DecimalSI), "1080n", ""),
            (dec(108, -8, DecimalSI), "1080n", ""),
            (dec(10800, -10, DecimalSI), "1080n", ""),
            (dec(1, -6, DecimalSI), "1u", ""),
            (dec(80, -6, DecimalSI), "80u", ""),
            (dec(1080, -6, DecimalSI), "1080u", ""),
        ];
        for (value, canonical, alternate) in &table {
            assert_eq!(value.to_string(), *canonical, "{value:?}");
            // Canonical text is kept verbatim when parsed.
            let parsed = q(canonical);
            assert_eq!(parsed.original.as_deref(), Some(*canonical), "{canonical}");
            assert_eq!(parsed.to_string(), *canonical);
            assert_eq!(&parsed, value, "{canonical}");
            if !alternate.is_empty() {
                let alt = q(alternate);
                assert_eq!(
                    alt.original, None,
                    "{alternate} should not be kept verbatim"
                );
                assert_eq!(alt.to_string(), *canonical, "{alternate}");
                assert_eq!(&alt, value, "{alternate}");
            }
            if !value.is_zero() {
                assert_eq!(
                    (-value).to_string(),
                    format!("-{canonical}"),
                    "-{canonical}"
                );
            }
        }
        // Below the smallest suffix only constructed values occur; they use exponent notation.
        assert_eq!(dec(1, -12, DecimalSI).to_string(), "1e-12");
        assert_eq!(dec(1, -10, DecimalSI).to_string(), "100e-12");
        assert_eq!(dec(2000, 0, BinarySI).to_string(), "2000");
        assert_eq!(dec(-2000, 0, BinarySI).to_string(), "-2000");
    }

    #[test]
    fn parse_emit() {
        let cases = [
            ("1Ki", "1Ki"),
            ("1Mi", "1Mi"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
            ("1000m", "1"),
            ("1.5Gi", "1536Mi"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("1e3", "1e3"),
            ("1E3", "1E3"),
            ("1000e0", "1e3"),
            ("1.5e3", "1500"),
            ("1.5Ki", "1536"),
            ("2048Ki", "2Mi"),
            ("8Ki", "8Ki"),
            ("129Mi", "129Mi"),
            ("1.0", "1"),
            ("10k", "10k"),
            ("12000", "12k"),
            ("12000m", "12"),
            ("0.5Ki", "512"),
            ("0.1Ki", "102400m"),
            ("100.5Mi", "102912Ki"),
            ("5Ei", "5Ei"),
            ("8Ei", "9223372036854775807"),
            // Upstream keeps inputs that already look canonical verbatim, quirks included.
            ("+1", "+1"),
            ("01", "01"),
            ("1.500", "1.500"),
            ("5.", "5."),
            ("-1Ki", "-1Ki"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
            let neg = q(&format!("-{}", input.trim_start_matches(['+', '-'])));
            if !neg.is_zero() && !input.starts_with(['+', '-']) {
                let want_neg = if neg.original.is_some() {
                    format!("-{input}")
                } else {
                    format!("-{}", q(input).canonical_string())
                };
                assert_eq!(neg.to_string(), want_neg, "-{input}");
            }
        }
    }

    #[test]
    fn verbatim_text_is_dropped_by_mutation() {
        let mut a = q("+1");
        assert_eq!(a.to_string(), "+1");
        assert_eq!(a.canonical_string(), "1");
        a += &q("0");
        assert_eq!(a.to_string(), "1");
        let mut b = q("1.500");
        b.set_format(Format::DecimalSI);
        assert_eq!(b.to_string(), "1500m");
        assert_eq!((-q("+1")).to_string(), "-1");
        let mut c = q("1.5");
        assert!(!c.round_up(0));
        assert_eq!(c.to_string(), "2");
    }

    #[test]
    fn comparisons() {
        let cases = [
            ("0", "0", Ordering::Equal),
            ("100m", "50m", Ordering::Greater),
            ("50m", "100m", Ordering::Less),
            ("10000T", "100Gi", Ordering::Greater),
            ("1", "1000m", Ordering::Equal),
            ("1Ki", "1024", Ordering::Equal),
            ("1k", "1Ki", Ordering::Less),
            ("1e3", "1k", Ordering::Equal),
            ("-1", "1", Ordering::Less),
            ("-1", "-2", Ordering::Greater),
            ("-1m", "0", Ordering::Less),
            ("1n", "0", Ordering::Greater),
            ("1e2147483647", "9Ei", Ordering::Greater),
            ("1e-2147483647", "1n", Ordering::Equal),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567891",
                Ordering::Less,
            ),
            ("999999999999999999999", "1e21", Ordering::Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(q(a).cmp(&q(b)), want, "{a} vs {b}");
            assert_eq!(q(b).cmp(&q(a)), want.reverse(), "{b} vs {a}");
            assert_eq!(q(a) == q(b), want == Ordering::Equal, "{a} == {b}");
        }
        assert_eq!(q("1500m").cmp_i64(1), Ordering::Greater);
        assert_eq!(q("1").cmp_i64(1), Ordering::Equal);
        assert_eq!(q("-1Ki").cmp_i64(-1024), Ordering::Equal);

        use std::collections::HashSet;
        let set: HashSet<Quantity> = ["1", "1000m", "1e0", "0.001k"]
            .iter()
            .map(|s| q(s))
            .collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn arithmetic() {
        let cases = [
            ("1", "500m", "1500m", "500m"),
            ("1Gi", "1Gi", "2Gi", "0"),
            ("100m", "0", "100m", "100m"),
            ("0", "1Gi", "1Gi", "-1Gi"),
            ("0", "100m", "100m", "-100m"),
            ("5", "10", "15", "-5"),
            ("10", "1Ki", "1034", "-1014"),
            ("1Ki", "10", "1034", "1014"),
            ("1e3", "1", "1001", "999"),
            (
                "9223372036854775807",
                "1",
                "9223372036854775808",
                "9223372036854775806",
            ),
        ];
        for (a, b, sum, diff) in cases {
            assert_eq!((q(a) + q(b)).to_string(), sum, "{a} + {b}");
            assert_eq!((&q(a) - &q(b)).to_string(), diff, "{a} - {b}");
            let mut x = q(a);
            x += &q(b);
            x -= &q(b);
            assert_eq!(x, q(a), "{a} + {b} - {b}");
        }
        assert_eq!(
            (q("1n") + q("1E")).to_string(),
            format!("1{}1n", "0".repeat(26))
        );
        assert_eq!(
            (q("1n") - q("1E")).to_string(),
            format!("-{}n", "9".repeat(27))
        );

        // A zero receiver takes the other operand's format.
        let mut z = Quantity::default();
        z += q("1Gi");
        assert_eq!(z.format(), Format::BinarySI);
        let total: Quantity = ["100m", "200m", "1"].iter().map(|s| q(s)).sum();
        assert_eq!(total.to_string(), "1300m");
        let total: Quantity = [q("1Gi"), q("1Gi")].iter().sum();
        assert_eq!(total.to_string(), "2Gi");

        // Sums that would need absurdly many digits keep the dominant operand instead.
        let huge = q("1e2147483647");
        assert_eq!((&huge + &q("1")).to_string(), "10e2147483646");
        assert_eq!((&q("1") + &huge).to_string(), "10e2147483646");
        assert_eq!((&q("1") - &huge).to_string(), "-10e2147483646");
        // Large but representable gaps stay exact.
        assert_eq!(
            (q("1e30") + q("1n")).to_string(),
            format!("1{}1e-9", "0".repeat(38))
        );
    }

    #[test]
    fn integer_views() {
        let cases: [(&str, i64, i64); 18] = [
            ("0", 0, 0),
            ("1", 1, 1000),
            ("-1", -1, -1000),
            ("1500m", 2, 1500),
            ("-1500m", -2, -1500),
            ("1.0001", 2, 1001),
            ("100m", 1, 100),
            ("1n", 1, 1),
            ("-1n", -1, -1),
            ("1Ki", 1024, 1024000),
            ("-.484785E-7466", -1, -1),
            (".484785E-7466", 1, 1),
            ("-.484785E-1", -1, -49),
            (".484785E-1", 1, 49),
            ("-0.0005", -1, -1),
            ("9.5000000001Gi", 10200547329, 10200547328108),
            ("-9.5000000001Gi", -10200547329, -10200547328108),
            ("1e20", i64::MAX, i64::MAX),
        ];
        for (input, value, milli) in cases {
            assert_eq!(q(input).value(), value, "{input}.value()");
            assert_eq!(q(input).milli_value(), milli, "{input}.milli_value()");
        }
        assert_eq!(q("-1e20").value(), i64::MIN);
        assert_eq!(q("9223372036854775807").value(), i64::MAX);
        assert_eq!(q("9223372036854775808").value(), i64::MAX);
        assert_eq!(q("9223372036854775807").milli_value(), i64::MAX);
        assert_eq!(q("1e2147483647").value(), i64::MAX);
        assert_eq!(q("1").scaled_value(-9), 1_000_000_000);
        assert_eq!(Quantity::new_scaled(1, 2).scaled_value(-2), 10_000);
        for (from, to, want) in [
            (-9, -9, 1),
            (-9, -6, 1),
            (-9, 0, 1),
            (-6, -9, 1000),
            (-3, -9, 1_000_000),
            (0, -3, 1000),
            (0, 0, 1),
        ] {
            assert_eq!(
                Quantity::new_scaled(1, from).scaled_value(to),
                want,
                "{from} -> {to}"
            );
        }

        assert_eq!(q("1000m").as_i64(), Some(1));
        assert_eq!(q("1500m").as_i64(), None);
        assert_eq!(q("1Ki").as_i64(), Some(1024));
        assert_eq!(q("9223372036854775808").as_i64(), None);
        assert_eq!(q("-9223372036854775808").as_i64(), Some(i64::MIN));

        assert_eq!(q("1500m").as_f64(), 1.5);
        assert_eq!(q("1Ki").as_f64(), 1024.0);
        assert_eq!(q("-1n").as_f64(), -1e-9);
        assert_eq!(q("1e2147483647").as_f64(), f64::INFINITY);
    }

    #[test]
    fn constructors() {
        use Format::*;
        for (value, format, want) in [
            (1, DecimalSI, "1"),
            (1000, DecimalSI, "1k"),
            (1234000, DecimalSI, "1234k"),
            (1024, BinarySI, "1Ki"),
            (1000000, DecimalExponent, "1e6"),
            (1024 * 1024, BinarySI, "1Mi"),
        ] {
            let x = Quantity::new(value, format);
            assert_eq!(x.to_string(), want);
            assert_eq!(q(want).value(), value);
        }
        for (value, format, want) in [
            (1, DecimalSI, "1m"),
            (1000, DecimalSI, "1"),
            (1234000, DecimalSI, "1234"),
            (1024, BinarySI, "1024m"),
            (1000000, DecimalExponent, "1e3"),
            (1024 * 1024, BinarySI, "1048576m"),
        ] {
            assert_eq!(Quantity::new_milli(value, format).to_string(), want);
        }
        for (value, scale, want) in [
            (1, -9, "1n"),
            (1000, -9, "1u"),
            (1, -6, "1u"),
            (1000, -6, "1m"),
            (1, -3, "1m"),
            (1000, -3, "1"),
            (1, 0, "1"),
            (0, -9, "0"),
            (0, 0, "0"),
        ] {
            let x = Quantity::new_scaled(value, scale);
            assert_eq!(x.to_string(), want);
            assert_eq!(q(want).scaled_value(scale), value);
        }
        assert_eq!(Quantity::default().to_string(), "0");
        assert_eq!(
            Quantity::new(i64::MIN, DecimalSI).to_string(),
            "-9223372036854775808"
        );
        assert_eq!(
            (-Quantity::new(i64::MIN, DecimalSI)).to_string(),
            "9223372036854775808"
        );
        assert_eq!(
            (-Quantity::new_milli(i64::MIN, DecimalSI)).to_string(),
            "9223372036854775808m"
        );
    }

    #[test]
    fn round_up() {
        let cases = [
            ("9.01", -3, "9010m", true),
            ("9.01", -2, "9010m", true),
            ("9.01", -1, "9100m", false),
            ("9.01", 0, "10", false),
            ("9.01", 1, "10", false),
            ("9.01", 2, "100", false),
            ("-9.01", -3, "-9010m", true),
            ("-9.01", -1, "-9100m", false),
            ("-9.01", 0, "-10", false),
            ("-9.01", 2, "-100", false),
        ];
        for (input, scale, want, exact) in cases {
            let mut x = q(input);
            assert_eq!(x.round_up(scale), exact, "{input} at {scale}");
            assert_eq!(x.to_string(), want, "{input} at {scale}");
        }
    }

    #[test]
    fn serde_round_trips() {
        assert_eq!(serde_json::to_value(q("1500m")).unwrap(), json!("1500m"));
        assert_eq!(serde_json::to_value(q("1.5")).unwrap(), json!("1500m"));
        assert_eq!(serde_json::to_value(q("+1")).unwrap(), json!("+1"));
        let cases = [
            (json!("1"), "1"),
            (json!(" 1"), "1"),
            (json!("1 "), "1"),
            (json!("\t100m\n"), "100m"),
            (json!(1), "1"),
            (json!(10), "10"),
            (json!(-1), "-1"),
            (json!(1.5), "1500m"),
            (json!(0.1), "100m"),
            (json!(1e3), "1k"),
            (json!(18446744073709551615u64), "18446744073709551615"),
            (json!(null), "0"),
        ];
        for (input, want) in cases {
            let got: Quantity = serde_json::from_value(input.clone()).unwrap();
            assert_eq!(got.to_string(), want, "{input}");
        }
        // From JSON text too, including whitespace around a bare number.
        for (text, want) in [(" 1", "1"), ("1 ", "1"), (" -1", "-1"), ("\"2Gi\"", "2Gi")] {
            let got: Quantity = serde_json::from_str(text).unwrap();
            assert_eq!(got.to_string(), want, "{text}");
        }

        let err = serde_json::from_value::<Quantity>(json!("abc")).unwrap_err();
        assert_eq!(err.to_string(), FORMAT_ERR);
        assert!(serde_json::from_value::<Quantity>(json!(true)).is_err());
        assert!(serde_json::from_value::<Quantity>(json!([])).is_err());

        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Resources {
            cpu: Quantity,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            memory: Option<Quantity>,
        }
        let r: Resources = serde_json::from_value(json!({"cpu": 0.5, "memory": "1.5Gi"})).unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"cpu": "500m", "memory": "1536Mi"})
        );
        let r: Resources = serde_json::from_value(json!({"cpu": "1", "memory": null})).unwrap();
        assert_eq!(r.memory, None);
    }

    #[test]
    fn odd_inputs_never_panic_and_canonical_text_round_trips() {
        let alphabet: Vec<char> = "0123456789.+-eEinumkKMGTP é".chars().collect();
        let mut seed: u64 = 0xDEAD_BEEF_CAFE_F00D;
        let mut parsed = 0;
        for _ in 0..50_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 10) as usize;
            let mut s = String::new();
            let mut x = seed;
            for _ in 0..len {
                s.push(alphabet[(x % alphabet.len() as u64) as usize]);
                x = x.rotate_left(11).wrapping_mul(0x2545_F491_4F6C_DD1D);
            }
            let Ok(v) = Quantity::parse(&s) else { continue };
            parsed += 1;
            let text = v.to_string();
            let again = Quantity::parse(&text)
                .unwrap_or_else(|e| panic!("{s:?} printed as {text:?} which fails: {e}"));
            assert_eq!(again, v, "{s:?} -> {text:?}");
            let canonical = v.canonical_string();
            assert_eq!(q(&canonical), v, "{s:?} -> {canonical:?}");
            assert_eq!(
                q(&canonical).to_string(),
                canonical,
                "{s:?}: canonical text is stable"
            );
            let _ = (v.value(), v.milli_value(), v.as_f64(), v.as_i64());
            let _ = (&v + &v, &v - &q("1"));
        }
        assert!(parsed > 1000, "only {parsed} random strings parsed");

        for s in [
            "1e-2147483647",
            "-1e2147483647",
            "9Ei",
            "-9Ei",
            "1e2147483647Ki",
            ".Ti",
            "+.",
            "-.",
            "0.0e-2147483647",
        ] {
            if let Ok(v) = Quantity::parse(s) {
                let _ = (
                    v.to_string(),
                    v.value(),
                    v.milli_value(),
                    v.as_f64(),
                    v.as_i64(),
                );
            }
        }
    }

    #[test]
    fn long_inputs() {
        let many_digits = format!("1{}", "0".repeat(5000));
        let v = q(&many_digits);
        assert_eq!(v.to_string(), "100e4998");
        assert_eq!(v.value(), i64::MAX);
        let many_zeros = format!("{}1", "0".repeat(100_000));
        // Leading zeros do not stop upstream from keeping the text verbatim.
        assert_eq!(q(&many_zeros).to_string(), many_zeros);
        assert_eq!(q(&many_zeros).canonical_string(), "1");
        // Exponents past what the parser accepts are brought back into range with zeros, so
        // the text can be read again.
        let big = q("1000000e2147483647");
        assert_eq!(big.to_string(), "10000000e2147483646");
        assert_eq!(q(&big.to_string()), big);
        let tiny = format!("0.{}1", "0".repeat(10_000));
        assert_eq!(q(&tiny).to_string(), "1n");
    }
}
