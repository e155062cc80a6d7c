import Testing
import TributaryCore
@testable import TributaryPostgres

/// How a migration's SQL is cut into statements (the extended protocol takes one per message).
@Suite("PostgreSQL migrations' statements")
struct PostgresSchemaTests {
    @Test func statementsEndAtASemicolonEndingALineOutsideAFunctionBody() {
        let sql = """
            -- a comment line is dropped
            CREATE TABLE a (x INT);
            CREATE FUNCTION f(p INT) RETURNS INT LANGUAGE plpgsql AS $$
            DECLARE
                y INT;
            BEGIN
                -- inside the body too
                SELECT p + 1 INTO y;
                RETURN y;
            END
            $$;
            INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);
            UPDATE a SET x = 3
                WHERE x = 1
            """
        let statements = PostgresSchema.statements(of: sql)
        #expect(statements.count == 4)
        #expect(statements.first == "CREATE TABLE a (x INT)")
        #expect(statements.dropFirst().first?.hasPrefix("CREATE FUNCTION f(p INT)") == true)
        #expect(statements.dropFirst().first?.hasSuffix("END\n$$") == true, "the whole body, its semicolons kept")
        #expect(statements.dropFirst().first?.contains("RETURN y;") == true)
        #expect(statements.dropFirst().first?.contains("inside the body") == false)
        #expect(statements.dropFirst(2).first == "INSERT INTO a VALUES (1); INSERT INTO a VALUES (2)", "a semicolon inside a line does not end one")
        #expect(statements.last == "UPDATE a SET x = 3\n    WHERE x = 1", "the last needs no semicolon")
    }

    @Test func thePageLookupMigrationIsOneStatement() throws {
        let migration = try #require(PostgresSchema.migrations.first { $0.name == "v11-page-lookup" })
        let statements = PostgresSchema.statements(of: migration.sql)
        #expect(statements.count == 1)
        #expect(statements.first?.hasPrefix("CREATE FUNCTION tributary_look_up_page(") == true)
        #expect(statements.first?.hasSuffix("$$") == true)
    }

    @Test func thePageCheckMigrationIsFourStatements() throws {
        let migration = try #require(PostgresSchema.migrations.first { $0.name == "v12-page-check" })
        let statements = PostgresSchema.statements(of: migration.sql)
        #expect(statements.count == 4)
        #expect(statements.first?.hasPrefix("ALTER FUNCTION tributary_look_up_page(") == true)
        #expect(statements.dropFirst().first?.hasPrefix("CREATE FUNCTION tributary_refuse(") == true)
        #expect(statements.dropFirst(2).first?.hasPrefix("CREATE FUNCTION tributary_check_page(") == true)
        #expect(statements.last?.hasPrefix("CREATE FUNCTION tributary_look_up_alone(") == true)
        #expect(statements.allSatisfy { !$0.hasPrefix("CREATE") || $0.hasSuffix("END\n$$") }, "each function's whole body")
    }

    @Test func thePageUpsertMigrationIsFiveStatements() throws {
        let migration = try #require(PostgresSchema.migrations.first { $0.name == "v13-page-upsert" })
        let statements = PostgresSchema.statements(of: migration.sql)
        #expect(statements.count == 5)
        let starts = [
            "CREATE FUNCTION tributary_upsert_records(", "CREATE FUNCTION tributary_upsert_alone(", "ALTER FUNCTION tributary_check_page(",
            "CREATE FUNCTION tributary_check_skipping(", "CREATE FUNCTION tributary_check_page(",
        ]
        for (statement, start) in zip(statements, starts) { #expect(statement.hasPrefix(start), "\(start)") }
        #expect(statements.allSatisfy { !$0.hasPrefix("CREATE") || $0.hasSuffix("END\n$$") }, "each function's whole body")
    }

    @Test func thePageSaveMigrationIsOneStatement() throws {
        let migration = try #require(PostgresSchema.migrations.first { $0.name == "v14-page-save" })
        let statements = PostgresSchema.statements(of: migration.sql)
        #expect(statements.count == 1)
        #expect(statements.first?.hasPrefix("CREATE FUNCTION tributary_save_alone(") == true)
        #expect(statements.first?.hasSuffix("END\n$$") == true, "the function's whole body")
    }

    /// v15 adds v14's function with one check more under a name of its own, and replaces v12's
    /// check, one statement each; v12's and v14's texts are as those releases shipped them (v15's
    /// are made from them).
    @Test func theUnsentPayloadsMigrationReplacesTheSaveFunction() throws {
        let v14 = try #require(PostgresSchema.migrations.first { $0.name == "v14-page-save" })
        let v15 = try #require(PostgresSchema.migrations.first { $0.name == "v15-unsent-payloads" })
        let statements = PostgresSchema.statements(of: v15.sql)
        #expect(statements.count == 2)
        #expect(statements.first?.hasPrefix("CREATE FUNCTION tributary_save_guessed(") == true)
        #expect(statements.last?.hasPrefix("CREATE OR REPLACE FUNCTION tributary_check_aligned(") == true)
        #expect(statements.allSatisfy { $0.hasSuffix("END\n$$") }, "each function's whole body")
        #expect(statements.last?.contains("FOR o_ IN 1..greatest(cardinality(hashes_), cardinality(p_hashes)) LOOP") == true)
        #expect(statements.last?.contains("unnest(hashes_, p_hashes)") == false, "the loop instead")
        let v12 = try #require(PostgresSchema.migrations.first { $0.name == "v12-page-check" })
        #expect(ContentHash.hash(Array(v12.sql.utf8)) == 0x86f0_2ad0_d6b4_64d0, "v12's text as shipped")
        #expect(!v14.sql.contains("p_ends[v / 4] <=") && v15.sql.contains("p_ends[v / 4] <="))
        #expect(statements.first == PostgresSchema.statements(of: v14.sql).first?
            .replacingOccurrences(of: "tributary_save_alone(", with: "tributary_save_guessed(")
            .replacingOccurrences(of: "    END IF;\n    SELECT array_agg(", with: "    END IF;\n    IF EXISTS (SELECT 1 FROM unnest(writes) AS v WHERE p_ends[v / 4] <= coalesce(p_ends[v / 4 - 1], 0)) THEN\n        RETURN;\n    END IF;\n    SELECT array_agg("),
            "v14's function with the check alone added")
        #expect(ContentHash.hash(Array(v14.sql.utf8)) == 0x52ad_9642_e91c_26f2, "v14's text as shipped")
        #expect(ContentHash.hash(Array(v15.sql.utf8)) == 0x2214_cafb_0a54_f4e0, "v15's text as shipped")
    }

    /// v16 replaces v13's `tributary_check_skipping` in one statement, with the same name and
    /// arguments (processes of the previous release call it as before); v13's text is as that
    /// release shipped it.
    @Test func theSkippingWalkMigrationReplacesTheSkippingCheck() throws {
        let v13 = try #require(PostgresSchema.migrations.first { $0.name == "v13-page-upsert" })
        let v16 = try #require(PostgresSchema.migrations.first { $0.name == "v16-skipping-walk" })
        let statements = PostgresSchema.statements(of: v16.sql)
        #expect(statements.count == 1)
        let head = "FUNCTION tributary_check_skipping(p_dataset BIGINT, p_generation BIGINT, p_ids TEXT[], p_hashes BIGINT[], p_min_records BIGINT)"
        #expect(statements.first?.hasPrefix("CREATE OR REPLACE " + head) == true)
        #expect(statements.first?.hasSuffix("END\n$$") == true, "the function's whole body")
        #expect(PostgresSchema.statements(of: v13.sql).contains { $0.hasPrefix("CREATE " + head) })
        #expect(ContentHash.hash(Array(v13.sql.utf8)) == 0xf521_a7a5_280f_2a73, "v13's text as shipped")
        #expect(ContentHash.hash(Array(v16.sql.utf8)) == 0xe771_48f4_e24f_ea2d, "v16's text as shipped")
    }

    /// The migrations before `v11-page-lookup` (no function bodies) split as they did before the
    /// splitter knew function bodies: at every semicolon ending a line.
    @Test func theEarlierMigrationsSplitAsBefore() {
        let withBodies: Set = ["v11-page-lookup", "v12-page-check", "v13-page-upsert", "v14-page-save", "v15-unsent-payloads", "v16-skipping-walk"]
        for migration in PostgresSchema.migrations where !withBodies.contains(migration.name) {
            let lines = migration.sql.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
            let before = lines.joined(separator: "\n").components(separatedBy: ";\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .map { $0.hasSuffix(";") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
            #expect(PostgresSchema.statements(of: migration.sql) == before, "\(migration.name)")
        }
    }
}

