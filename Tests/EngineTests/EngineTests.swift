import Datasets
import Engine
import Foundation
import GBDT
import Persistence
import Registry
import Serving
import Testing
import TwoTower
import _TestSupport

@Suite("Engine") struct EngineTests {
    @Test("a bundle answers exactly as the funnel that wrote it")
    func bundleRoundTrip() throws {
        let cat = try CSVCatalog()
        defer { cat.remove() }
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: CSVCatalog.config())
        #expect(funnel.ranker != nil)
        let folder = "\(cat.folder)/bundle"
        try funnel.writeBundle(to: folder)
        // Both sides with budgets no loaded machine reaches: a stage over the default 50 ms
        // (under a sanitizer, beside a fuzzer) would answer from a fallback on one side only.
        let generous = Data(#"{"retrieval_budget_ms": 60000, "ranking_budget_ms": 60000, "deadline_ms": 120000}"#.utf8)
        let engine = try Engine(folder: folder, inline: true, serving: generous)
        let pipeline = try funnel.pipeline()
        pipeline.recommender.retrievalBudget = 60
        pipeline.recommender.rankingBudget = 60
        pipeline.recommender.deadline = 120
        for u in stride(from: 0, to: 200, by: 17) {
            let user = funnel.catalog.userIDs[u]
            let seen = Set(funnel.features.statistics.history(u, before: funnel.features.now &+ 1))
            let direct = try pipeline.recommend(FunnelRequest(user: u, vector: Array(funnel.userVectors.row(u)), exclude: seen), k: 10)
            let served = try engine.recommend(user: user, k: 10)
            #expect(served.items.map(\.item) == direct.items.map { funnel.catalog.itemIDs[$0.id] })
            #expect(served.items.allSatisfy { $0.rankerScore != nil && $0.title != nil && !$0.title!.isEmpty })
            // Nothing the user has seen comes back.
            #expect(served.items.allSatisfy { !seen.contains(Int32(engine.item($0.item)!)) })
        }
    }

    @Test("a bundle with a corrupt, missing or foreign file is refused, naming the file")
    func corruptBundles() throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.towers.epochs = 1
        let data = try cat.source.load()
        let a = try FunnelTrainer.train(data, config: config)
        config.towers.seed = 99
        let b = try FunnelTrainer.train(data, config: config)
        let good = "\(cat.folder)/a", other = "\(cat.folder)/b"
        try a.writeBundle(to: good)
        try b.writeBundle(to: other)
        #expect(throws: EngineError.self) { try a.writeBundle(to: good) }  // never over an existing bundle
        for file in [ModelBundle.File.towers, ModelBundle.File.index, ModelBundle.File.ranker, ModelBundle.File.catalog] {
            for damage in ["flip", "truncate", "remove", "foreign"] {
                let copy = "\(cat.folder)/\(file)-\(damage)"
                try FileManager.default.copyItem(atPath: good, toPath: copy)
                let path = "\(copy)/\(file)"
                switch damage {
                case "flip":
                    var bytes = try FileBytes.read(path)
                    bytes[bytes.count / 2] ^= 0x40
                    try Data(bytes).write(to: URL(fileURLWithPath: path))
                case "truncate":
                    let bytes = try FileBytes.read(path)
                    try Data(bytes.prefix(bytes.count - 9)).write(to: URL(fileURLWithPath: path))
                case "remove":
                    try FileManager.default.removeItem(atPath: path)
                default:
                    // Both bundles hold the same catalog (same data): only the models differ.
                    if try FileBytes.read(path) == FileBytes.read("\(other)/\(file)") { continue }
                    try FileManager.default.removeItem(atPath: path)
                    try FileManager.default.copyItem(atPath: "\(other)/\(file)", toPath: path)
                }
                do {
                    _ = try Engine(folder: copy)
                    Issue.record("\(file) \(damage): loaded")
                } catch let EngineError.corruptBundle(_, named, _) {
                    #expect(named == file, "\(damage)")
                }
            }
        }
        #expect(throws: EngineError.self) { try Engine(folder: "\(cat.folder)/no-such-bundle") }
        #expect(try Engine(folder: good).recommend(user: "u1", k: 5).items.count == 5)
    }

    @Test("a registry keeps serving its production version when a newer one is corrupt")
    func previousVersionKeepsServing() throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.towers.epochs = 1
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: config)
        let root = "\(cat.folder)/registry"
        let v1 = try funnel.register(in: root, name: "shop")
        try ModelRegistry(root: root).promote("shop", version: v1.version)
        let serving = try Engine.fromRegistry(root, name: "shop")
        let before = try serving.recommend(user: "u3", k: 5)
        let v2 = try funnel.register(in: root, name: "shop")
        let ranker = "\(root)/\(v2.path)/\(ModelBundle.File.ranker)"
        var bytes = try FileBytes.read(ranker)
        bytes[40] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: ranker))
        #expect(throws: EngineError.self) { try Engine(folder: "\(root)/\(v2.path)") }
        let after = try Engine.fromRegistry(root, name: "shop")
        #expect(after.version == "v\(v1.version)")
        #expect(try serving.recommend(user: "u3", k: 5).items == before.items)
    }

    @Test("text search puts the item whose title is the query first; unknown ids are errors")
    func searchAndErrors() throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.towers.epochs = 1
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: config)
        try funnel.writeBundle(to: "\(cat.folder)/b")
        let engine = try Engine(folder: "\(cat.folder)/b")
        for i in [0, 57, 133, 199] {
            let title = engine.catalog.titles![i]
            for mode in SearchMode.allCases {
                let answer = try engine.search(title, k: 5, mode: mode)
                #expect(answer.items.first?.item == engine.catalog.itemIDs[i], "\(mode) '\(title)'")
                #expect(answer.items.first?.title == title)
            }
        }
        #expect(throws: EngineError.unknown(kind: "user", id: "nobody")) { try engine.recommend(user: "nobody", k: 5) }
        #expect(throws: EngineError.unknown(kind: "item", id: "zzz")) { try engine.similar(item: "zzz", k: 5) }
        #expect(throws: EngineError.self) { try engine.recommend(user: "u1", k: 0) }
        #expect(throws: EngineError.self) { try engine.recommend(user: "u1", k: Engine.maxK + 1) }
        // A new user from touched items: served, and the touched items left out.
        let cold = try engine.recommend(user: "nobody", k: 10, touched: ["i1", "i2"])
        #expect(cold.items.count == 10)
        #expect(!cold.items.contains { $0.item == "i1" || $0.item == "i2" })
        let similar = try engine.similar(item: "i5", k: 5)
        #expect(similar.items.count == 5 && !similar.items.contains { $0.item == "i5" })
    }

    @Test("the catalog file round-trips and refuses bad offsets")
    func catalogFile() throws {
        let cat = try CSVCatalog(users: 50, items: 80, interactions: 1_000)
        defer { cat.remove() }
        let catalog = try ItemCatalog(try cat.source.load())
        let path = "\(cat.folder)/catalog.fnl"
        try catalog.save(to: path)
        let back = try ItemCatalog.load(from: path)
        #expect(back.userIDs == catalog.userIDs && back.itemIDs == catalog.itemIDs && back.titles == catalog.titles)
        #expect(back.searchText == catalog.searchText && back.log == catalog.log)
        #expect(back.attributes.categoryCodes == catalog.attributes.categoryCodes)
        #expect(back.attributes.categoryOffsets == catalog.attributes.categoryOffsets)
        #expect(back.attributes.createdAt == catalog.attributes.createdAt)
        #expect(back.attributes.numericNames == ["price"])
        #expect(back.attributes.numericValues == catalog.attributes.numericValues)
        // Titles and categories come from the CSV as written.
        let table = try AttributeTable.readCSV("\(cat.folder)/items.csv", key: "item_id", columns: [ColumnSpec("title", .text)])
        guard case .text(let titles)? = table.columns["title"] else { Issue.record("no titles"); return }
        #expect(catalog.titles == titles)
        // A log item outside the catalog, re-sealed with a valid checksum, is refused by the loader.
        var broken = catalog
        broken.log.itemIndex[0] = Int32(catalog.itemIDs.count + 5)
        try broken.save(to: path)
        #expect(throws: EngineError.self) { try ItemCatalog.load(from: path) }
    }

    @Test("retraining adds a described item: searchable by title, embedded from its features, seen items left out")
    func retrainAddsItems() throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.towers.epochs = 1
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: config)
        try funnel.writeBundle(to: "\(cat.folder)/v1")
        let engine = try Engine(folder: "\(cat.folder)/v1")
        let end = funnel.features.now
        var new = InteractionLog(users: Vocabulary(engine.catalog.userIDs), items: Vocabulary(engine.catalog.itemIDs))
        let newItem = new.items.intern("brand-new")
        new.append(user: 3, item: newItem, timestamp: end + 10)
        new.append(user: 4, item: newItem, timestamp: end + 20)
        new.append(user: 3, item: 7, timestamp: end + 30)
        var builder = AttributeTable.Builder(specs: FeatureSchema.columnSpecs(cat.schema.items!))
        try builder.append(fields: ["c1", "t1|t2", "\(end)", "9.5", "zebra lamp deluxe"]) { EngineError.invalidData($0) }
        let table = builder.table(keys: Vocabulary(["brand-new"]))
        let (bundle, result) = try Retraining.retrain(engine, interactions: new, items: table, to: "\(cat.folder)/v2")
        #expect(result.newItems == 1 && result.inserted == 1)
        let next = try Engine(folder: bundle.folder)
        #expect(next.itemCount == 201)
        #expect(try next.search("zebra lamp deluxe", k: 3).items.first?.item == "brand-new")
        #expect(next.catalog.name(200) == "zebra lamp deluxe")
        #expect(next.features.items.categoryNames[next.features.items.primaryCategory(200)!] == "t1")
        let answer = try next.recommend(user: "u3", k: 20)
        #expect(!answer.items.contains { $0.item == "brand-new" || $0.item == engine.catalog.itemIDs[7] })
        // The item's embedding comes from its features: it is near items that share them, not at random.
        #expect(try next.similar(item: "brand-new", k: 5).items.count == 5)
    }
}

@Suite("Towers' validation search") struct TowerTuningTests {
    @Test("the search runs one trial per value of each axis, keeps the trial with the best validation score, and its settings reach the bundle and a retrain",
          arguments: ValidationMetric.allCases)
    func coordinateSearch(selection: ValidationMetric) throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        let data = try cat.source.load()
        var config = CSVCatalog.config()
        config.trainRanker = false
        config.towers.epochs = 2
        var tuning = TowerTuning()
        tuning.idDropout = [0.1, 0]
        tuning.idWidth = [nil, 24]
        tuning.embedding = [.init(.adagrad, 0.05), .init(.lazyAdam, 0.003)]
        tuning.temperature = [0.05, 0.2]
        config.tuning = tuning
        config.selection = selection
        let funnel = try FunnelTrainer.train(data, config: config)
        let trials = funnel.report.tuning
        #expect(trials.count == tuning.trials && trials.count == 5)
        guard let chosen = trials.first(where: \.chosen) else { Issue.record("no chosen trial"); return }
        #expect(trials.filter(\.chosen).count == 1)
        #expect(trials.allSatisfy { selection.score($0.validation) <= selection.score(chosen.validation) })
        // Coordinate search: each axis's later trials keep the values chosen before them.
        #expect(trials[0].idDropout == 0.1 && trials[1].idDropout == 0)
        let dropout = selection.score(trials[1].validation) > selection.score(trials[0].validation) ? Float(0) : 0.1
        #expect(trials[2].idDropout == dropout && trials[2].idWidth == 24)
        let best3 = trials[0...2].max { selection.score($0.validation) < selection.score($1.validation) }!
        #expect(trials[3].idDropout == dropout && trials[3].idWidth == best3.idWidth && trials[3].embedding == .init(.lazyAdam, 0.003))
        #expect(trials[4].temperature == 0.2)
        // The trained funnel is the chosen trial's: same settings, and its validation score
        // is that trial's (the model was not trained again).
        let p = funnel.config.towers
        #expect(p.idWidth == chosen.idWidth)
        let idField = funnel.towers.items.features.fields.first { $0.kind == .id }!
        #expect(idField.dimension == (chosen.idWidth ?? data.itemFeatures.fields.first { $0.kind == .id }!.dimension))
        #expect(p.idDropout == chosen.idDropout && p.embeddingOptimizer == chosen.embedding.optimizer
                && p.temperature == chosen.temperature && p.embeddingLearningRate == chosen.embedding.learningRate)
        let split = funnel.split
        let valid = try funnel.towers.evaluate(heldOut: split.validationItems, exclude: { split.trainItems[Int($0)] })
        #expect(abs(valid.ndcg10 - chosen.validation.ndcg10) < 1e-12 && abs(valid.ndcg - chosen.validation.ndcg) < 1e-12)
        // The bundle records them, and a retrain reads them back.
        try funnel.writeBundle(to: "\(cat.folder)/v1")
        let engine = try Engine(folder: "\(cat.folder)/v1")
        let back = TwoTowerParameters().applying(summary: engine.bundle.manifest.parameters)
        #expect(back.idDropout == p.idDropout && back.idWidth == p.idWidth && back.embeddingOptimizer == p.embeddingOptimizer
                && back.embeddingLearningRate == p.embeddingLearningRate && back.logQEstimate == p.logQEstimate)
        #expect(engine.towers.parameters.temperature == p.temperature)
    }

    @Test("a spent budget stops the search after its first trial, which is then chosen")
    func budget() throws {
        let cat = try CSVCatalog(users: 100, items: 150, interactions: 3_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.trainRanker = false
        config.towers.epochs = 1
        var tuning = TowerTuning()
        tuning.budgetSeconds = 1e-9
        config.tuning = tuning
        var notes = [String]()
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: config) { if case .note(let s) = $0 { notes.append(s) } }
        #expect(funnel.report.tuning.count == 1 && funnel.report.tuning[0].chosen)
        #expect(notes.contains { $0.contains("budget is spent; 1 of 6 trials ran") })
    }
}

@Suite("Learning curve") struct LearningCurveTests {
    @Test("each fraction trains on a prefix of the shuffled training pairs; its popularity and ALS equal the baselines fitted on that prefix")
    func baselinesPerFraction() throws {
        let cat = try CSVCatalog(users: 100, items: 150, interactions: 3_000)
        defer { cat.remove() }
        let data = try cat.source.load()
        var p = TwoTowerParameters()
        p.epochs = 1
        p.dimension = 8
        let curve = try Protocols.learningCurve(data, fractions: [1, 0.5], parameters: p)
        #expect(curve.map(\.fraction) == [0.5, 1])
        let split = LeaveLastOutSplit(data.log)
        #expect(curve.map(\.interactions) == [split.train.count / 2, split.train.count])
        // At 100% the baselines are the trainer's own, on the whole training part.
        let full = curve[1]
        let popularity = Baselines.popularity(split, items: data.log.items.count)
        #expect(full.popularity?.ndcg10 == popularity.ndcg10 && full.popularity?.hr10 == popularity.hr10)
        let (x, y) = ImplicitALS.fit(pairs: split.train, users: data.log.users.count, items: data.log.items.count,
                                     regularization: 1, alpha: 10, seed: p.seed)
        let als = try RetrievalMetrics.evaluate(users: x, items: y, heldOut: split.testItems, exclude: split.seenBeforeTest)
        #expect(full.als?.ndcg10 == als.ndcg10 && full.als?.mrr == als.mrr)
        // Half the data gives other figures (the prefix is used, not the whole).
        #expect(curve[0].popularity?.mrr != full.popularity?.mrr)
    }
}

@Suite("Data sources") struct DataSourceTests {
    @Test("a catalog read from its CSV files trains the same funnel as the catalog in memory")
    func csvEqualsInMemory() throws {
        let cat = try CSVCatalog(users: 150, items: 300, interactions: 5_000, seed: 11)
        defer { cat.remove() }
        var config = SyntheticCatalog.Config()
        config.users = 150
        config.items = 300
        config.interactions = 5_000
        config.categories = 8
        config.tags = 30
        config.seed = 11
        let memory = try DataSource.synthetic(config).load()
        let csv = try DataSource.csv(interactions: "\(cat.folder)/interactions.csv", items: "\(cat.folder)/items.csv",
                                     users: "\(cat.folder)/users.csv", schema: DataSource.syntheticSchema).load()
        #expect(csv.log == memory.log)
        var c = CSVCatalog.config()
        c.towers.epochs = 1
        let a = try FunnelTrainer.train(memory, config: c), b = try FunnelTrainer.train(csv, config: c)
        #expect(a.itemVectors.storage == b.itemVectors.storage)
        #expect(a.report.towers.ndcg10 == b.report.towers.ndcg10 && a.report.towers.hr10 == b.report.towers.hr10)
        #expect(a.ranker == b.ranker)
    }
}

@Suite("Live registry models") struct LiveModelsTests {
    @Test("promote, canary and rollback take effect while serving; a version that fails to load is refused and the old keeps serving")
    func followsTheRegistry() throws {
        let cat = try CSVCatalog(users: 120, items: 200, interactions: 4_000)
        defer { cat.remove() }
        var config = CSVCatalog.config()
        config.towers.epochs = 1
        let funnel = try FunnelTrainer.train(try cat.source.load(), config: config)
        let root = "\(cat.folder)/registry"
        let registry = ModelRegistry(root: root)
        let v1 = try funnel.register(in: root, name: "shop")
        try registry.promote("shop", version: v1.version)
        let live = try LiveModels(root: root, name: "shop")
        #expect(live.route("u1").version == "v1")
        #expect(!live.refresh())  // nothing changed
        let held = live.route("u1")  // a request in flight keeps its engine

        let v2 = try funnel.register(in: root, name: "shop")
        try registry.promote("shop", version: v2.version)
        #expect(live.refresh())
        #expect(live.route("u1").version == "v2" && live.lastError == nil)
        let heldAnswer = try held.recommend(user: "u1", k: 3)
        #expect(held.version == "v1" && heldAnswer.items.count == 3)

        // A canary for half the users: the same users always, by the registry's hash.
        let v3 = try funnel.register(in: root, name: "shop")
        try registry.promote("shop", version: v3.version, canaryFraction: 0.5)
        #expect(live.refresh())
        let users = (0..<120).map { "u\($0)" }
        for u in users { #expect(live.route(u).version == (ModelRegistry.bucket(u) < 0.5 ? "v3" : "v2")) }
        #expect(Set(users.map { live.route($0).version! }) == ["v2", "v3"])

        // A corrupt version promoted: refused, reported, the old set keeps serving.
        let v4 = try funnel.register(in: root, name: "shop")
        let towers = "\(root)/\(v4.path)/\(ModelBundle.File.towers)"
        var bytes = try FileBytes.read(towers)
        bytes[bytes.count / 3] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: towers))
        try registry.promote("shop", version: v4.version)
        #expect(!live.refresh())
        #expect(live.lastError?.contains(ModelBundle.File.towers) == true)
        #expect(live.snapshot.production.version == "v2")

        // Rolling back to v2 (v4 archived) is a change that loads: served at once.
        try registry.rollback("shop")
        #expect(live.refresh() && live.lastError == nil && live.snapshot.production.version == "v2")
    }
}
