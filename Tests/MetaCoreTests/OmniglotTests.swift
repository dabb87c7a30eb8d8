import Foundation
import Testing
@testable import MetaCore

/// Where the tests look for the real Omniglot download: $METACORE_OMNIGLOT, else ../shared/data/omniglot
/// beside the package.
let omniglotPath: String = ProcessInfo.processInfo.environment["METACORE_OMNIGLOT"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data/omniglot").standardizedFileURL.path
let omniglotPresent = FileManager.default.fileExists(atPath: omniglotPath + "/images_background.zip")
    || FileManager.default.fileExists(atPath: omniglotPath + "/images_background")
let skipMessage: Comment = "Omniglot not found at \(omniglotPath) (set METACORE_OMNIGLOT): skipping the tests on real data"

/// The full dataset, decoded once for all tests (through a cache in a fresh temporary directory).
let omniglotFixture: Result<(Omniglot, Omniglot.CacheStatus, URL), any Error> = Result {
    let cache = FileManager.default.temporaryDirectory.appendingPathComponent("metacore-tests-\(UUID().uuidString)")
    let (dataset, status) = try Omniglot.load(from: omniglotPath, cacheDirectory: cache)
    return (dataset, status, cache)
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("metacore-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite("Omniglot on the real data", .enabled(if: omniglotPresent, skipMessage))
struct OmniglotTests {
    var omniglot: Omniglot { get throws { try omniglotFixture.get().0 } }

    @Test func countsAndPreprocessing() throws {
        let data = try omniglot
        #expect(data.characters.count == 1623)
        #expect(data.characters(in: .background).count == 964)
        #expect(data.characters(in: .evaluation).count == 659)
        #expect(Set(data.characters.map { "\($0.part)/\($0.alphabet)" }).count == 50)
        #expect(data.pixels.count == 1623 * 20 * 28 * 28)
        #expect(data.characters.first?.path == "background/Alphabet_of_the_Magi/character01")
        // Inverted: the page is 0 and strokes are bright; a stroke covers a small part of the image.
        let mean = Double(data.pixels.reduce(0) { $0 + Int($1) }) / Double(data.pixels.count) / 255
        #expect(mean > 0.03 && mean < 0.2, "mean ink \(mean)")
        let corners = (0 ..< 1623).map { data.image(character: $0, drawing: 0).first! }
        #expect(corners.filter { $0 == 0 }.count > 1600, "the corners of the images should be blank page")
        // The area filter leaves grey levels at stroke edges rather than a thresholded image.
        #expect(Set(data.image(character: 0, drawing: 0)).count > 10)
    }

    @Test func splitIsSeededDisjointAndComplete() throws {
        let data = try omniglot
        let split = try data.split(seed: 0)
        #expect(split.train.count == 1200 && split.test.count == 423)
        #expect(Set(split.train).isDisjoint(with: split.test))
        #expect(Set(split.train + split.test) == Set(data.characters.indices))
        #expect(try data.split(seed: 0).train == split.train)
        #expect(try data.split(seed: 1).train != split.train)
        #expect(throws: MetaCoreError.self) { try data.split(trainCount: 1623) }
    }

    @Test func rotationsAreExtraClasses() throws {
        let data = try omniglot, split = try data.split()
        let tasks = try OmniglotTasks(data, characters: split.train, rotations: [0, 1, 2, 3], ways: 5, shots: 1, queries: 1)
        #expect(tasks.classes.count == 4800)
        #expect(Set(tasks.classes).count == 4800)
        // An episode's image of a class at one quarter turn is the stored drawing turned counter-clockwise.
        let character = split.train[7]
        let turned = try OmniglotTasks(data, characters: [character, split.train[8]], rotations: [1], ways: 2, shots: 1, queries: 19)
        var random = RandomSource(seed: 3)
        let task = try turned.sample(&random)
        let drawings = (0 ..< 20).map { d in
            let image = Array(data.image(character: character, drawing: d))
            return (0 ..< 28 * 28).map { i in Float(image[(i % 28) * 28 + (27 - i / 28)]) / 255 }   // out[y][x] = in[x][27 - y]
        }
        let support = (0 ..< 2).map { row in Array(task.support.inputs.scalars[row * 784 ..< (row + 1) * 784]) }
        #expect(support.contains { drawings.contains($0) }, "no support image equals a drawing of character \(character) turned by 90°")
        #expect(!support.contains { image in (0 ..< 20).contains { Array(data.image(character: character, drawing: $0)).map { Float($0) / 255 } == image } },
                "the support should hold the turned drawing, not the upright one")
    }

    @Test func episodesAreBalancedAndReproducible() throws {
        let data = try omniglot, split = try data.split()
        let tasks = try OmniglotTasks(data, characters: split.test, ways: 5, shots: 1, queries: 15)
        #expect(tasks.inputShape == [1, 28, 28] && tasks.outputShape == [5])
        var a = RandomSource(seed: 11), b = RandomSource(seed: 11), c = RandomSource(seed: 12)
        let first = try tasks.sample(&a), again = try tasks.sample(&b), other = try tasks.sample(&c)
        #expect(first.support == again.support && first.query == again.query)
        #expect(first.support != other.support)
        guard case .labels(let support) = first.support.targets, case .labels(let query) = first.query.targets else {
            Issue.record("episodes must carry labels"); return
        }
        #expect(support == [0, 1, 2, 3, 4])
        #expect((0 ..< 5).allSatisfy { k in query.filter { $0 == k }.count == 15 })
        // Evaluation overrides the queries per class; more drawings than a character has is an error.
        var d = RandomSource(seed: 1)
        #expect(try tasks.sample(&d, queryCount: 19).query.count == 95)
        #expect(throws: MetaCoreError.self) { try tasks.sample(&d, queryCount: 20) }
        // Over many episodes every class is drawn, about equally often.
        var counts = [Int](repeating: 0, count: tasks.classes.count), random = RandomSource(seed: 5)
        for _ in 0 ..< 2000 { for c in OmniglotTasks.choose(5, from: counts.count, using: &random) { counts[c] += 1 } }
        #expect(counts.min()! > 5 && counts.max()! < 60, "class frequencies \(counts.min()!) ... \(counts.max()!), expected about 23.6")
        #expect(Set(OmniglotTasks.choose(20, from: 20, using: &random)) == Set(0 ..< 20))
    }

    @Test func invalidEpisodesAreRejected() throws {
        let data = try omniglot
        #expect(throws: MetaCoreError.self) { try OmniglotTasks(data, characters: [0, 1, 2], ways: 5, shots: 1, queries: 1) }
        #expect(throws: MetaCoreError.self) { try OmniglotTasks(data, characters: [0, 1], ways: 2, shots: 10, queries: 11) }
        #expect(throws: MetaCoreError.self) { try OmniglotTasks(data, characters: [0, 5000], ways: 2, shots: 1, queries: 1) }
        #expect(throws: MetaCoreError.self) { try OmniglotTasks(data, characters: [0, 1], rotations: [4], ways: 2, shots: 1, queries: 1) }
    }

    @Test func theCacheRoundTrips() throws {
        let (data, status, cache) = try omniglotFixture.get()
        guard case .rebuilt = status else { Issue.record("a fresh cache directory should be built, got \(status)"); return }
        let clock = ContinuousClock(), start = clock.now
        let (again, second) = try Omniglot.load(from: omniglotPath, cacheDirectory: cache)
        let seconds = Double((clock.now - start).components.attoseconds) * 1e-18 + Double((clock.now - start).components.seconds)
        guard case .loaded = second else { Issue.record("the second load should read the cache, got \(second)"); return }
        #expect(again.pixels == data.pixels && again.characters == data.characters)
        #expect(seconds < 5, "reading the cache took \(seconds) s")
    }

    /// A few real characters copied out of the zip files into the folder layout.
    func smallFolderDataset() throws -> (URL, [Int]) {
        let data = try omniglot, root = try temporaryDirectory()
        let picks = [0, 1, 964]   // two background characters, one evaluation character
        for (part, zipName) in [(Omniglot.Part.background, "images_background"), (.evaluation, "images_evaluation")] {
            let archive = try ZipArchive(path: omniglotPath + "/\(zipName).zip")
            for (index, name) in archive.names.enumerated() where name.hasSuffix(".png") {
                let parts = name.split(separator: "/").map(String.init)
                guard picks.contains(where: { data.characters[$0].part == part && data.characters[$0].alphabet == parts[1] && data.characters[$0].name == parts[2] }) else { continue }
                let folder = root.appendingPathComponent("\(zipName)/\(parts[1])/\(parts[2])")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try Data(archive.read(index, maximumSize: 1 << 20)).write(to: folder.appendingPathComponent(parts[3]))
            }
        }
        return (root, picks)
    }

    @Test func foldersDecodeLikeTheZipFiles() throws {
        let data = try omniglot
        let (root, picks) = try smallFolderDataset()
        defer { try? FileManager.default.removeItem(at: root) }
        let (small, status) = try Omniglot.load(from: root.path, cacheDirectory: nil)
        #expect(status == .disabled)
        #expect(small.characters == picks.map { data.characters[$0] })
        for (i, c) in picks.enumerated() {
            #expect((0 ..< 20).allSatisfy { small.image(character: i, drawing: $0) == data.image(character: c, drawing: $0) })
        }
    }

    /// Omniglot read as an image folder (one alphabet: its characters are the classes) with Omniglot's
    /// preprocessing — gray, inverted, area-resized to 28x28 — has the Omniglot loader's pixels, bit for bit.
    @Test func anImageFolderReadsOmniglotAsTheOmniglotLoaderDoes() throws {
        let data = try omniglot
        let (root, picks) = try smallFolderDataset()
        defer { try? FileManager.default.removeItem(at: root) }
        let character = data.characters[picks[0]]
        var settings = ImageFolder.Settings()
        settings.side = 28; settings.channels = 1; settings.invert = true; settings.classSplit = [100, 0, 0]
        let alphabet = root.appendingPathComponent("images_background/\(character.alphabet)")
        let (images, _) = try ImageFolder.load(from: alphabet.path, settings: settings, context: DatasetLoading(cacheDirectory: nil, threads: 2))
        let inAlphabet = picks.filter { data.characters[$0].part == .background && data.characters[$0].alphabet == character.alphabet }
        #expect(images.classes.map(\.name) == inAlphabet.map { data.characters[$0].name })
        for (i, c) in inAlphabet.enumerated() {
            #expect(images.classes[i].images.count == 20)
            #expect((0 ..< 20).allSatisfy { images.image(images.classes[i].images.lowerBound + $0).pixels == Array(data.image(character: c, drawing: $0)) })
        }
    }

    /// `--image-size` is an option of the Omniglot task families: at 84 (OML's size) the drawings are those an
    /// 84x84 image folder read gives, they are cached apart from the 28x28 ones, and a run of OML's network on
    /// them trains.
    @Test func theImageSizeIsAnOptionOfTheOmniglotTasks() throws {
        let (root, picks) = try smallFolderDataset()
        let cache = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: cache) }
        let config = try TrainingConfiguration().applying(["--algorithm", "oml", "--task", "continual-omniglot", "--ways", "1", "--shots", "2",
                                                           "--queries", "2", "--remember", "3", "--image-size", "84", "--backbone", "strided-conv",
                                                           "--channels", "4", "--hidden", "8", "--meta-batch", "1"]).resolved()
        let data = DataSource(path: root.path, cacheDirectory: cache)
        let tasks = try config.makeTasks(.train, data: data)
        #expect(tasks.inputShape == [1, 84, 84])
        let model = try config.makeModel(for: tasks)
        #expect(model.outputShape == [ContinualOmniglotTasks.outputs] && model.shapes[13] == [4 * 3 * 3])

        let large = try #require(tasks as? ContinualOmniglotTasks).dataset
        var settings = ImageFolder.Settings()
        settings.side = 84; settings.channels = 1; settings.invert = true; settings.classSplit = [100, 0, 0]
        let character = large.characters[0]
        let (images, _) = try ImageFolder.load(from: root.appendingPathComponent("images_background/\(character.alphabet)").path,
                                               settings: settings, context: DatasetLoading(cacheDirectory: nil, threads: 2))
        let index = try #require(images.classes.firstIndex { $0.name == character.name })
        #expect((0 ..< 20).allSatisfy { images.image(images.classes[index].images.lowerBound + $0).pixels == Array(large.image(character: 0, drawing: $0)) })

        let small = try Omniglot.load(from: root.path, cacheDirectory: cache)
        guard case .rebuilt = small.1 else { Issue.record("28x28 should not be read from the 84x84 cache, got \(small.1)"); return }
        #expect(small.0.side == 28 && small.0.characters == large.characters && large.characters.count == picks.count)
        #expect { _ = try config.makeTasks(.train, data: DataSource([small.0])) } throws: { "\($0)".contains("asks for --image-size 84") }

        var trainer = try config.makeTrainer(data: data)
        let before = trainer.metaParameters
        let step = try trainer.step()
        #expect(step.loss.isFinite && trainer.metaParameters != before)
        #expect { _ = try TrainingConfiguration().applying(["--task", "omniglot", "--image-size", "106"]).resolvedOptions() }
            throws: { "\($0)".contains("image-size") }
    }

    /// The folder layout's fingerprint covers every drawing: one rewritten in place is decoded again, not
    /// served from the cache; links to folders are followed; odd trees are explained.
    @Test func folderTreesAreFingerprintedAndChecked() throws {
        let (root, _) = try smallFolderDataset()
        let cache = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: cache) }
        _ = try Omniglot.load(from: root.path, cacheDirectory: cache)
        let alphabet = try #require(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images_background").sorted().first)
        let character = root.appendingPathComponent("images_background/\(alphabet)")
            .appendingPathComponent(try #require(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images_background/\(alphabet)").sorted().first))
        let drawing = character.appendingPathComponent(try #require(try FileManager.default.contentsOfDirectory(atPath: character.path).sorted().first))
        let other = character.appendingPathComponent(try FileManager.default.contentsOfDirectory(atPath: character.path).sorted()[1])
        let characterModified = try FileManager.default.attributesOfItem(atPath: character.path)[.modificationDate] as! Date
        try Data(contentsOf: other).write(to: drawing)   // rewritten in place: the folder's own time may not change
        try FileManager.default.setAttributes([.modificationDate: characterModified], ofItemAtPath: character.path)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 5)], ofItemAtPath: drawing.path)
        let (reloaded, status) = try Omniglot.load(from: root.path, cacheDirectory: cache)
        guard case .rebuilt = status else { Issue.record("a rewritten drawing must not be served from the cache: \(status)"); return }
        #expect(reloaded.image(character: 0, drawing: 0) == reloaded.image(character: 0, drawing: 1))

        // A linked character folder is read as the folder it points at.
        let linkedRoot = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: linkedRoot) }
        try FileManager.default.copyItem(at: root.appendingPathComponent("images_evaluation"), to: linkedRoot.appendingPathComponent("images_evaluation"))
        try FileManager.default.createDirectory(at: linkedRoot.appendingPathComponent("images_background/\(alphabet)"), withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: root.path + "/images_background/\(alphabet)") {
            try FileManager.default.createSymbolicLink(at: linkedRoot.appendingPathComponent("images_background/\(alphabet)/\(name)"),
                                                       withDestinationURL: root.appendingPathComponent("images_background/\(alphabet)/\(name)"))
        }
        #expect(try Omniglot.load(from: linkedRoot.path, cacheDirectory: nil).0.pixels == Omniglot.load(from: root.path, cacheDirectory: nil).0.pixels)

        try FileManager.default.createDirectory(at: linkedRoot.appendingPathComponent("images_background/Empty_Alphabet"), withIntermediateDirectories: true)
        #expect { try Omniglot.load(from: linkedRoot.path, cacheDirectory: nil) } throws: { "\($0)".contains("Empty_Alphabet holds no character folders") }
        try FileManager.default.removeItem(at: linkedRoot.appendingPathComponent("images_background/Empty_Alphabet"))
        try FileManager.default.createDirectory(at: linkedRoot.appendingPathComponent("images_background/\(alphabet)/char\nacter99"), withIntermediateDirectories: true)
        #expect { try Omniglot.load(from: linkedRoot.path, cacheDirectory: nil) } throws: { "\($0)".contains("control character") }
    }

    /// A cache that cannot be written (here --cache names a file) costs the cache, not the data.
    @Test func anUnwritableCacheIsAWarning() throws {
        let (root, _) = try smallFolderDataset()
        let blocker = try temporaryDirectory().appendingPathComponent("a-file")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: blocker.deletingLastPathComponent()) }
        try Data("in the way".utf8).write(to: blocker)
        let (data, status) = try Omniglot.load(from: root.path, cacheDirectory: blocker)
        guard case .unwritable = status else { Issue.record("expected an unwritable cache, got \(status)"); return }
        #expect(data.characters.count == 3)
    }

    @Test func aCorruptOrStaleCacheIsRebuilt() throws {
        let (root, _) = try smallFolderDataset()
        let cache = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: cache) }
        let (original, first) = try Omniglot.load(from: root.path, cacheDirectory: cache)
        #expect(try Omniglot.load(from: root.path, cacheDirectory: nil).0.pixels == original.pixels)
        guard case .rebuilt(let file, _) = first else { Issue.record("expected a new cache, got \(first)"); return }

        func reload() throws -> String? {
            let (dataset, status) = try Omniglot.load(from: root.path, cacheDirectory: cache)
            let decoded = try Omniglot.load(from: root.path, cacheDirectory: nil).0
            #expect(dataset.pixels == decoded.pixels && dataset.characters == decoded.characters)
            if case .rebuilt(_, let reason) = status { return reason }
            return nil
        }
        #expect(try reload() == nil)

        var bytes = try Data(contentsOf: file)
        bytes[bytes.count / 2] ^= 0x40                          // one flipped bit among the pixels
        try bytes.write(to: file)
        #expect(try reload()?.contains("checksum mismatch") == true)

        try Data(try Data(contentsOf: file).prefix(1000)).write(to: file)   // truncated
        #expect(try reload()?.contains("corrupt") == true)

        try Data("not a cache".utf8).write(to: file)
        #expect(try reload()?.contains("corrupt") == true)

        // Renaming a drawing changes its character folder: the cache no longer describes the files.
        let alphabet = try FileManager.default.contentsOfDirectory(atPath: root.path + "/images_background").sorted()[0]
        let folder = root.path + "/images_background/\(alphabet)/character01"
        let drawing = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()[0]
        Thread.sleep(forTimeInterval: 0.01)
        try FileManager.default.moveItem(atPath: folder + "/" + drawing, toPath: folder + "/renamed_" + drawing)
        #expect(try reload()?.contains("stale") == true)
        #expect(try reload() == nil)
    }

    @Test func missingOrMalformedDataIsExplained() throws {
        let empty = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: empty) }
        do {
            _ = try Omniglot.load(from: empty.path, cacheDirectory: nil)
            Issue.record("an empty directory must not load")
        } catch let error as MetaCoreError {
            #expect(error.kind == .missingData)
            #expect(error.message.contains("images_background") && error.message.contains(empty.path))
        }

        let (root, _) = try smallFolderDataset()
        defer { try? FileManager.default.removeItem(at: root) }
        let alphabet = try FileManager.default.contentsOfDirectory(atPath: root.path + "/images_background").sorted()[0]
        let folder = root.path + "/images_background/\(alphabet)/character02"
        try FileManager.default.removeItem(atPath: folder + "/" + FileManager.default.contentsOfDirectory(atPath: folder).sorted()[0])
        do {
            _ = try Omniglot.load(from: root.path, cacheDirectory: nil)
            Issue.record("a character with 19 drawings must not load")
        } catch let error as MetaCoreError {
            #expect(error.kind == .corruptData)
            #expect(error.message.contains("character02 has 19 drawings"))
        }

        try Data("not a png".utf8).write(to: URL(fileURLWithPath: folder + "/0000_99.png"))
        do {
            _ = try Omniglot.load(from: root.path, cacheDirectory: nil)
            Issue.record("a file that is not a PNG must not load")
        } catch let error as MetaCoreError {
            #expect(error.kind == .corruptData)
            #expect(error.message.contains("0000_99.png"), "\(error.message)")
        }
    }

    @Test(arguments: ["protonet", "matchnet", "fomaml"])
    func omniglotRunsResumeExactly(_ algorithm: String) throws {
        var config = TrainingConfiguration()
        config.algorithm = algorithm; config.task = "omniglot"
        config.ways = 3; config.shots = 1; config.queries = 2; config.metaBatch = 2; config.iterations = 6
        config.innerLearningRate = 0.4
        try expectResumedRunContinuesExactly(config, data: DataSource([omniglot]))
    }

    /// `--split lake` meta-trains on the background alphabets and tests on the evaluation ones; the split is
    /// stored in the checkpoint, evaluation uses it, and refuses to evaluate on another.
    @Test func theSplitIsChosenStoredAndHonoured() throws {
        let data = try omniglot
        let lake = try OmniglotTasks.Split.lake.characters(of: data), vinyals = try OmniglotTasks.Split.vinyals.characters(of: data)
        let earlier = try data.split(seed: 0)
        #expect(lake.train == data.characters(in: .background) && lake.test == data.characters(in: .evaluation))
        #expect(vinyals.train == earlier.train && vinyals.test == earlier.test)

        let config = try TrainingConfiguration().applying(["--algorithm", "protonet", "--task", "omniglot", "--ways", "3", "--shots", "1",
                                                           "--queries", "2", "--meta-batch", "1", "--iterations", "2", "--split", "lake",
                                                           "--channels", "8"])
        let source = DataSource([data])
        for (split, characters) in [(TrainingConfiguration.Split.train, lake.train), (.test, lake.test)] {
            let tasks = try #require(try config.makeTasks(split, data: source) as? OmniglotTasks)
            #expect(Set(tasks.classes.map(\.character)) == Set(characters))
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("split-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        var session = try TrainingSession(configuration: config, data: source, output: .init(checkpoint: url))
        _ = try session.run()
        let file = try SafeTensors.read(from: url)
        #expect(try TrainingCheckpoint.configuration(of: file).options["split"] == .string("lake"))
        _ = try Evaluation.run(checkpoint: file, data: source, taskCount: 2, steps: 0, seed: 1)
        #expect { try Evaluation.run(checkpoint: file, configuration: TrainingCheckpoint.configuration(of: file).applying(["--split", "vinyals"]),
                                     data: source, taskCount: 2, steps: 0, seed: 1) } throws: { "\($0)".contains("--split lake") }
        // The episodes' classes shape the test only, so evaluation may change them.
        let within = try TrainingCheckpoint.configuration(of: file).applying(["--episodes", "within-alphabet"])
        _ = try Evaluation.run(checkpoint: file, configuration: within, data: source, taskCount: 2, steps: 0, seed: 1)
        // `metactl eval --meta-train-classes`: the same seeded draw, from the meta-training characters.
        let (onTrain, trainer) = try Evaluation.run(checkpoint: file, data: source, taskCount: 6, steps: 0, queryCount: 2, seed: 1, split: .train)
        let onTest = try Evaluation.run(checkpoint: file, data: source, taskCount: 6, steps: 0, queryCount: 2, seed: 1).0
        for (split, evaluation) in [(TrainingConfiguration.Split.train, onTrain), (.test, onTest)] {
            let direct = try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: config.makeTasks(split, data: source),
                                            taskCount: 6, steps: 0, queryCount: 2, seed: 1, runner: trainer.runner)
            #expect(evaluation.loss.map(\.mean) == direct.loss.map(\.mean))
        }
        #expect(onTrain.loss.map(\.mean) != onTest.loss.map(\.mean))
        #expect(onTrain.classes == "meta-train" && onTest.classes == "meta-test")
    }

    /// Within-alphabet episodes draw all their classes from one alphabet, every alphabet big enough in turn;
    /// an alphabet too small for the ways is never drawn, and ways beyond every alphabet are refused.
    @Test func withinAlphabetEpisodesStayInOneAlphabet() throws {
        let data = try omniglot, test = data.characters(in: .evaluation)
        var owner: [[UInt8]: Int] = [:]   // every test drawing's character
        for c in test { for d in 0 ..< 20 { owner[Array(data.image(character: c, drawing: d))] = c } }
        /// The characters of an episode of `tasks` from `random`, read off its support images (one shot each).
        func classes(of tasks: OmniglotTasks, _ random: inout RandomSource) throws -> [Omniglot.CharacterClass] {
            let support = try tasks.sample(&random).support.inputs.scalars
            return try (0 ..< tasks.ways).map { row in
                let image = support[row * 784 ..< (row + 1) * 784].map { UInt8(($0 * 255).rounded()) }
                return data.characters[try #require(owner[image], "support image \(row) is no test drawing")]
            }
        }
        let tasks = try OmniglotTasks(data, characters: test, ways: 20, shots: 1, queries: 1, episodes: .withinAlphabet)
        var random = RandomSource(seed: 4), seen = Set<String>()
        for _ in 0 ..< 40 {
            let alphabets = Set(try classes(of: tasks, &random).map(\.alphabet))
            #expect(alphabets.count == 1, "an episode drew from \(alphabets.sorted())")
            seen.formUnion(alphabets)
        }
        #expect(seen.count >= 12, "the 20 evaluation alphabets all have 20 or more characters; 40 episodes drew \(seen.count)")
        let any = try OmniglotTasks(data, characters: test, ways: 20, shots: 1, queries: 1)
        #expect(Set(try classes(of: any, &random).map(\.alphabet)).count > 1)
        let big = try OmniglotTasks(data, characters: test, ways: 30, shots: 1, queries: 1, episodes: .withinAlphabet)
        #expect(big.alphabets.allSatisfy { $0.count >= 30 } && big.alphabets.count < 20)
        #expect { try OmniglotTasks(data, characters: test, ways: 48, shots: 1, queries: 1, episodes: .withinAlphabet) }
            throws: { "\($0)".contains("the largest here has 47") }
    }

    /// A few hundred 5-way 1-shot episodes of Prototypical Networks lift test accuracy far above chance (20%)
    /// and well above the untrained embedding.
    @Test func prototypicalNetworksLearn() throws {
        let data = try omniglot, split = try data.split()
        let train = try OmniglotTasks(data, characters: split.train, rotations: [0, 1, 2, 3], ways: 5, shots: 1, queries: 5)
        let test = try OmniglotTasks(data, characters: split.test, ways: 5, shots: 1, queries: 5)
        let model = try Model.conv4(classes: 0, channels: 32)
        var trainer = try MetaTrainer(learner: PrototypicalNetworks(), model: model, tasks: train, optimizer: Adam(learningRate: 0.003),
                                      metaBatch: 1, seed: 1)
        func accuracy() throws -> Double {
            try Evaluation.run(trainer.learner, meta: trainer.metaParameters, tasks: test, taskCount: 100, steps: 0, queryCount: nil,
                               seed: 2, runner: trainer.runner).accuracy![0].mean
        }
        let before = try accuracy()
        for _ in 0 ..< 300 { _ = try trainer.step() }
        let after = try accuracy()
        // Rounding alone moves the trained accuracy by a point or two (0.842 - 0.858 across versions of the
        // convolution kernels that differ only in their floating-point association), so the bar sits below that.
        #expect(after > 0.82 && after > before + 0.1, "5-way 1-shot accuracy \(before) untrained, \(after) after 300 episodes")
    }
}
