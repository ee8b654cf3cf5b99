import Foundation
import Datasets
import Serving

/// A filter on item attributes, as a request gives it: every clause must hold.
///
///     category=Action|Comedy      the item has one of these categories
///     category!=Horror            the item has none of these
///     price>=10   price<=99.5     a numeric attribute's range (a missing value fails)
///     created>=2024-01-01         created at or after a time (a date or Unix seconds)
public struct ItemFilter: Sendable, Equatable {
    public enum Clause: Sendable, Equatable {
        case categoryIn(Set<String>)
        case categoryNotIn(Set<String>)
        case atLeast(attribute: String, Float)
        case atMost(attribute: String, Float)
        case createdAfter(Int64)
    }

    public var clauses: [Clause]

    public init(_ clauses: [Clause] = []) { self.clauses = clauses }

    /// Parses clauses like `category=a|b`, `price<=10`, `created>=2024-01-01`.
    /// - Throws: `EngineError.invalidRequest` naming the clause it cannot read.
    public static func parse(_ texts: [String]) throws -> ItemFilter {
        var out = [Clause]()
        for text in texts where !text.isEmpty {
            func value(after op: String) -> (String, String)? {
                guard let r = text.range(of: op) else { return nil }
                return (String(text[..<r.lowerBound]).trimmed, String(text[r.upperBound...]).trimmed)
            }
            if let (name, v) = value(after: "!="), name == "category" {
                out.append(.categoryNotIn(Set(v.split(separator: "|").map(String.init))))
            } else if let (name, v) = value(after: ">=") {
                if name == "created" {
                    guard let t = Timestamp.parse(v) else { throw EngineError.invalidRequest("filter '\(text)': '\(v)' is not a date or Unix seconds") }
                    out.append(.createdAfter(t))
                } else {
                    guard let x = Float(v), x.isFinite, !name.isEmpty else { throw EngineError.invalidRequest("filter '\(text)': '\(v)' is not a finite number") }
                    out.append(.atLeast(attribute: name, x))
                }
            } else if let (name, v) = value(after: "<=") {
                guard let x = Float(v), x.isFinite, !name.isEmpty else { throw EngineError.invalidRequest("filter '\(text)': '\(v)' is not a finite number") }
                out.append(.atMost(attribute: name, x))
            } else if let (name, v) = value(after: "="), name == "category" {
                out.append(.categoryIn(Set(v.split(separator: "|").map(String.init))))
            } else {
                throw EngineError.invalidRequest("filter '\(text)': expected category=A|B, category!=A, NAME>=X, NAME<=X or created>=DATE")
            }
        }
        return ItemFilter(out)
    }

    public var isEmpty: Bool { clauses.isEmpty }

    /// The items of a catalog that pass, as a membership table.
    /// - Throws: `EngineError.invalidRequest` for a numeric attribute the catalog lacks.
    public func allowed(in attributes: ItemAttributes) throws -> [Bool] {
        var ok = [Bool](repeating: true, count: attributes.count)
        for clause in clauses {
            switch clause {
            case .categoryIn(let names), .categoryNotIn(let names):
                let codes = Set(attributes.categoryNames.enumerated().filter { names.contains($0.element) }.map { Int32($0.offset) })
                let wanted: Bool
                if case .categoryIn = clause { wanted = true } else { wanted = false }
                for i in ok.indices where ok[i] {
                    ok[i] = attributes.categories(of: i).contains(where: codes.contains) == wanted
                }
            case .atLeast(let name, let x), .atMost(let name, let x):
                guard let f = attributes.numericNames.firstIndex(of: name) else {
                    throw EngineError.invalidRequest("filter on '\(name)': the catalog's numeric attributes are \(attributes.numericNames)")
                }
                let values = attributes.numericValues[f]
                let atLeast: Bool
                if case .atLeast = clause { atLeast = true } else { atLeast = false }
                for i in ok.indices where ok[i] { ok[i] = atLeast ? values[i] >= x : values[i] <= x }
            case .createdAfter(let t):
                for i in ok.indices where ok[i] { ok[i] = attributes.created(i).map { $0 >= t } ?? false }
            }
        }
        return ok
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespaces) }
}
