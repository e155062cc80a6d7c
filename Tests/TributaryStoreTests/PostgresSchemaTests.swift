import Testing
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

    /// The migrations before `v11-page-lookup` (no function bodies) split as they did before the
    /// splitter knew function bodies: at every semicolon ending a line.
    @Test func theEarlierMigrationsSplitAsBefore() {
        let withBodies: Set = ["v11-page-lookup", "v12-page-check", "v13-page-upsert", "v14-page-save"]
        for migration in PostgresSchema.migrations where !withBodies.contains(migration.name) {
            let lines = migration.sql.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
            let before = lines.joined(separator: "\n").components(separatedBy: ";\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .map { $0.hasSuffix(";") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
            #expect(PostgresSchema.statements(of: migration.sql) == before, "\(migration.name)")
        }
    }
}

