import Foundation

/// Fixed-point text of a number, as C's `%.Nf` writes it, without Foundation's formatter:
/// `String(format:)` was 3% of the HTTP server's CPU under load, for the two numbers of
/// every served item's explanation.
public enum Decimals {
    /// `String(format: "%.\(places)f", x)`: rounded to nearest, ties to even, on the
    /// number's exact binary value (a test holds the two to each other).
    /// - Complexity: O(digits).
    public static func fixed(_ x: Double, places: Int) -> String {
        precondition((0...6).contains(places), "places must be in 0...6")
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        // Past 2^52 / scale the scaled value has no fraction bits left: leave it to C.
        guard x.isFinite, abs(x) * scale < 4e15 else { return String(format: "%.\(places)f", x) }
        let p = x * scale
        // The product's rounding error, exactly (an FMA): it decides a tie the rounded
        // product shows but the exact value does not have.
        let error = (-p).addingProduct(x, scale)
        var n = p.rounded(.toNearestOrEven)
        let floor = p.rounded(.down)
        if p - floor == 0.5, error != 0 { n = error > 0 ? floor + 1 : floor }
        let negative = x.sign == .minus
        var digits = Array(String(Int64(abs(n))).utf8)
        if digits.count <= places { digits.insert(contentsOf: repeatElement(UInt8(ascii: "0"), count: places + 1 - digits.count), at: 0) }
        if places > 0 { digits.insert(UInt8(ascii: "."), at: digits.count - places) }
        if negative { digits.insert(UInt8(ascii: "-"), at: 0) }
        return String(decoding: digits, as: UTF8.self)
    }
}
