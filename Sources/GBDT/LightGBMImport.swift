import Foundation

extension GBDTModel {
    /// Loads a LightGBM text model (`model.txt`): numerical splits with their missing-value
    /// handling and default directions, for objectives lambdarank, binary and regression.
    /// Predictions equal LightGBM's (`predict` with `raw_score` or the sigmoid for binary).
    /// - Throws: `GBDTError.corruptModel` naming the line for anything it cannot read
    ///   (categorical splits and multiclass models are refused with a clear message).
    public static func loadLightGBM(_ path: String) throws -> GBDTModel {
        func bad(_ why: String) -> GBDTError { .corruptModel(path: path, reason: why) }
        guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot read the file") }
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.first == "tree" else { throw bad("not a LightGBM text model (the first line is not 'tree')") }
        var header = [String: String]()
        var i = 1
        while i < lines.count && !lines[i].hasPrefix("Tree=") {
            if let eq = lines[i].firstIndex(of: "=") { header[String(lines[i][..<eq])] = String(lines[i][lines[i].index(after: eq)...]) }
            i += 1
        }
        guard let maxFeature = header["max_feature_idx"].flatMap(Int.init) else { throw bad("no max_feature_idx") }
        guard (0..<(1 << 20)).contains(maxFeature) else { throw bad("max_feature_idx \(maxFeature) is outside 0..<\(1 << 20)") }
        if let k = header["num_class"].flatMap(Int.init), k != 1 { throw bad("multiclass models (num_class=\(k)) are not supported") }
        let objText = header["objective"] ?? "regression"
        let objName = objText.split(separator: " ").first.map(String.init) ?? objText
        guard let objective = Objective(name: objName) else { throw bad("objective '\(objText)' is not supported") }
        var sigmoid = 1.0
        if objective == .binary, let s = objText.split(separator: " ").first(where: { $0.hasPrefix("sigmoid:") }) {
            guard let v = Double(s.dropFirst("sigmoid:".count)), v.isFinite, v > 0 else { throw bad("'\(s)' is not a positive finite sigmoid") }
            sigmoid = v
        }
        let names = header["feature_names"].map { $0.split(separator: " ").map(String.init) } ?? []
        var trees = [Tree]()
        while i < lines.count {
            guard lines[i].hasPrefix("Tree=") else {
                if lines[i] == "end of trees" { break }
                i += 1
                continue
            }
            let treeLine = i + 1
            var fields = [String: String]()
            i += 1
            while i < lines.count && !lines[i].isEmpty && !lines[i].hasPrefix("Tree=") && lines[i] != "end of trees" {
                if let eq = lines[i].firstIndex(of: "=") { fields[String(lines[i][..<eq])] = String(lines[i][lines[i].index(after: eq)...]) }
                i += 1
            }
            func nums<T: LosslessStringConvertible>(_ key: String, _: T.Type) throws -> [T] {
                guard let v = fields[key] else { return [] }
                return try v.split(separator: " ").map {
                    guard let x = T(String($0)) else { throw bad("tree at line \(treeLine): bad \(key) value '\($0)'") }
                    return x
                }
            }
            guard let numLeaves = fields["num_leaves"].flatMap(Int.init), numLeaves >= 1 else { throw bad("tree at line \(treeLine) has no num_leaves") }
            if let cats = fields["num_cat"].flatMap(Int.init), cats > 0 { throw bad("tree at line \(treeLine) has categorical splits, which are not supported") }
            var t = Tree()
            t.leafValue = try nums("leaf_value", Double.self)
            t.leafCount = try nums("leaf_count", Double.self)
            if t.leafCount.isEmpty { t.leafCount = [Double](repeating: 0, count: t.leafValue.count) }
            guard t.leafValue.count == numLeaves else { throw bad("tree at line \(treeLine): \(t.leafValue.count) leaf values for \(numLeaves) leaves") }
            if numLeaves > 1 {
                t.feature = try nums("split_feature", Int32.self)
                t.threshold = try nums("threshold", Double.self)
                let decision = try nums("decision_type", Int.self)
                t.left = try nums("left_child", Int32.self)
                t.right = try nums("right_child", Int32.self)
                t.gain = try nums("split_gain", Float.self)
                t.internalCount = try nums("internal_count", Double.self)
                let n = numLeaves - 1
                if t.gain.isEmpty { t.gain = [Float](repeating: 0, count: n) }
                if t.internalCount.isEmpty { t.internalCount = [Double](repeating: 0, count: n) }
                guard decision.count == n else { throw bad("tree at line \(treeLine): \(decision.count) decision types for \(n) splits") }
                for d in decision {
                    if d & 1 != 0 { throw bad("tree at line \(treeLine) has a categorical split, which is not supported") }
                    t.defaultLeft.append(d & 2 != 0)
                    t.missingType.append(MissingType(rawValue: UInt8((d >> 2) & 3)) ?? .none)
                }
            } else {
                t.leafCount = [t.leafCount.first ?? 0]
            }
            try validate(t, featureCount: maxFeature + 1) { bad("tree at line \(treeLine): \($0)") }
            trees.append(t)
        }
        guard !trees.isEmpty else { throw bad("the model has no trees") }
        var m = GBDTModel(objective: objective, trees: trees, initScore: 0, featureCount: maxFeature + 1, featureNames: names)
        m.sigmoid = sigmoid
        return m
    }
}
