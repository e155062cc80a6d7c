import TributaryCore

/// Runs a sync described in `tributary.yaml` (``DeclarativeSpec``): fills `{variant}` and
/// `{metadata.KEY}` into the endpoint and parameters, adds the incremental parameter from
/// `lastSyncDate`, reads page after page through the connection's provider access (the next page
/// is fetched while one is saved), maps each record, saves the page, and checkpoints where the next
/// page starts — so an interrupted run resumes at the page it had not saved yet, with the same
/// incremental window.
struct DeclarativeSyncFunction: SyncFunction {
    let name: String
    let spec: DeclarativeSpec

    func exec(_ nango: any SyncContext) async throws {
        let metadata = try await nango.getMetadata()
        let model = nango.models[0]
        var request = ProviderRequest(spec.method, try DeclarativeSpec.fill(spec.endpoint, variant: nango.variant, metadata: metadata, for: .path))
        for parameter in spec.params {
            request.setQuery(parameter.name, try DeclarativeSpec.fill(parameter.value, variant: nango.variant, metadata: metadata))
        }
        let checkpoint = try await nango.getCheckpoint()
        // A resumed run keeps the window it started with; a new one starts from lastSyncDate.
        let since = checkpoint?["since"]?.stringValue ?? nango.lastSyncDate.map { Timestamp($0).iso8601 }
        if let parameter = spec.incrementalParam, let since { request.setQuery(parameter, since) }
        let resumeAfter = checkpoint?["next"]?.stringValue
        // The marker is not logged: a next link from before credentials were stripped from links may hold one.
        if resumeAfter != nil { await nango.log("resuming from the checkpoint's page marker") }

        guard let pagination = spec.pagination else {
            request.isPage = true  // one page holding the whole listing: the page cap applies
            let response = try await nango.send(request)
            try await nango.batchSave(prepared: try spec.preparedRecords(of: response, at: spec.recordsPath, answering: request).records, model: model)
            return
        }
        var pages = 0
        var saved = 0
        // The next pages are fetched, read, mapped and prepared (canonical JSON + hash) while these
        // are written; the pages that were ready when the write before ended go in one write (see
        // `forEachBatch(preparedBy:)`). This side only saves: it runs on the store's writer thread,
        // if the store has one, while no other listing writes there.
        try await nango.paginate(request, pagination, resumingAfter: resumeAfter).forEachBatch(preparedBy: spec, writingOn: nango.writeExecutor) { batch in
            guard let last = batch.last else { return }
            let records = batch.count == 1 ? last.records : batch.flatMap(\.records)
            // The pages and the checkpoint naming the page after them are saved as one write.
            if let next = last.next {
                var values: JSONObject = ["next": .string(next)]
                if let since { values["since"] = .string(since) }
                try await nango.batchSave(prepared: records, model: model, checkpoint: try Checkpoint(values))
            } else {
                try await nango.batchSave(prepared: records, model: model)
            }
            pages += batch.count
            saved += records.count
        }
        // Done: an incremental run must not resume mid-listing next time (a full one's checkpoint is cleared on success).
        if checkpoint != nil || pages > 1 { try await nango.clearCheckpoint() }
        await nango.log("read \(saved) records in \(pages) page(s)")
    }
}
