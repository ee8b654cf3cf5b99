import Foundation

/// Parses the timestamp spellings found in interaction logs and catalogs into Unix seconds.
///
/// Accepted: integer seconds (`881250949`), fractional seconds, ISO 8601 dates and
/// date-times (`1997-12-04`, `1997-12-04T15:55:49Z`, `1997-12-04 15:55:49`, with an
/// optional `+hh:mm` offset), and MovieLens dates (`01-Jan-1995`).
public enum Timestamp {
    /// Times Funnel reads lie within years -9999...9999 (Unix seconds ±253,402,300,799):
    /// differences of two such times never overflow, and a value past them is a typo.
    public static let range: ClosedRange<Int64> = -253_402_300_799...253_402_300_799

    public static func parse(_ text: String) -> Int64? {
        guard let t = parseUnbounded(text), range.contains(t) else { return nil }
        return t
    }

    static func parseUnbounded(_ text: String) -> Int64? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { return nil }
        if let v = Int64(s) { return v }
        if let d = DecimalNumber.parse(s), abs(d) < 1e15 { return Int64(d.rounded(.down)) }
        let b = Array(s.utf8)
        func num(_ from: Int, _ len: Int) -> Int? {
            guard from + len <= b.count else { return nil }
            var v = 0
            for i in from..<(from + len) {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        // d-Mon-yyyy or dd-Mon-yyyy
        if b.count == 10 || b.count == 11 {
            let o = b.count - 11  // -1 for a one-digit day
            if b[2 + o] == UInt8(ascii: "-"), b[6 + o] == UInt8(ascii: "-"),
               let day = num(0, 2 + o), let year = num(7 + o, 4) {
                let mon = String(decoding: b[(3 + o)..<(6 + o)], as: UTF8.self).lowercased()
                let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
                guard let m = months.firstIndex(of: mon), (1...daysIn(year, m + 1)).contains(day) else { return nil }
                return daysFromCivil(year, m + 1, day) * 86_400
            }
        }
        // yyyy-mm-dd[(T| )hh:mm[:ss[.fff]]][Z|±hh:mm]
        guard b.count >= 10, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
              let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2),
              (1...12).contains(mo), (1...daysIn(y, mo)).contains(d) else { return nil }
        var secs = daysFromCivil(y, mo, d) * 86_400
        if b.count == 10 { return secs }
        guard b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: " "),
              let hh = num(11, 2), b.count >= 16, b[13] == UInt8(ascii: ":"), let mm = num(14, 2),
              hh < 24, mm < 60 else { return nil }
        secs += Int64(hh * 3600 + mm * 60)
        var i = 16
        if i < b.count && b[i] == UInt8(ascii: ":") {
            guard let ss = num(i + 1, 2), ss <= 60 else { return nil }
            secs += Int64(ss)
            i += 3
            if i < b.count && b[i] == UInt8(ascii: ".") {
                i += 1
                while i < b.count && b[i] >= 48 && b[i] <= 57 { i += 1 }
            }
        }
        if i == b.count { return secs }
        if b[i] == UInt8(ascii: "Z") && i + 1 == b.count { return secs }
        if (b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-")), let oh = num(i + 1, 2) {
            var om = 0
            if i + 3 < b.count {
                let j = b[i + 3] == UInt8(ascii: ":") ? i + 4 : i + 3
                guard let m = num(j, 2), j + 2 == b.count else { return nil }
                om = m
            } else if i + 3 != b.count { return nil }
            let off = Int64(oh * 3600 + om * 60)
            return b[i] == UInt8(ascii: "+") ? secs - off : secs + off
        }
        return nil
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    /// Days in a month of the proleptic Gregorian calendar.
    public static func daysIn(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    public static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return Int64(era * 146_097 + doe - 719_468)
    }
}
