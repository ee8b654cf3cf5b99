/// Strict parsing of decimal numbers from text files: `[+-]digits[.digits][(e|E)[+-]digits]`
/// (or `.digits`), nothing else. Swift's `Float(_:)` also takes hexadecimal floats
/// ("0x1p3"), "nan" and "inf", and the C parser under it stops at a NUL byte, so that
/// "12\0junk" would read as 12: a data file means none of those.
public enum DecimalNumber {
    /// The value of `text` when it is a plain decimal number, else nil.
    public static func parse<S: StringProtocol>(_ text: S) -> Double? {
        var sawDigit = false, sawDot = false, sawExponent = false, exponentDigit = false
        var previous: UInt8 = 0
        for (i, c) in text.utf8.enumerated() {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if sawExponent { exponentDigit = true } else { sawDigit = true }
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard i == 0 || previous == UInt8(ascii: "e") || previous == UInt8(ascii: "E") else { return nil }
            case UInt8(ascii: "."):
                guard !sawDot, !sawExponent else { return nil }
                sawDot = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                guard sawDigit, !sawExponent else { return nil }
                sawExponent = true
            default:
                return nil
            }
            previous = c
        }
        guard sawDigit, !sawExponent || exponentDigit else { return nil }
        return Double(String(text))
    }

    /// `parse` as a finite Float (nil when out of Float's range).
    public static func float<S: StringProtocol>(_ text: S) -> Float? {
        guard let d = parse(text) else { return nil }
        let f = Float(d)
        return f.isFinite ? f : nil
    }
}
