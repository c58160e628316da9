-- The command line of atlas-run. engine/main.c calls main(argv) inside its
-- one protected call and exits with the number returned here.
local errors = require "atlas.errors"
local log = require "atlas.run.log"
local sys = require "atlas.sys"

local M = {}

local exit = require "atlas.run.exit"
local EXIT = exit.codes
local complete -- `atlas-run complete`, defined with the other commands below

M.HELP = [[
atlas-run %s - run operational runbooks as tested Lua playbooks

Usage:
  atlas-run [options] PLAYBOOK [name=value ...]   run a playbook
  atlas-run list [DIR]                            playbooks in DIR (default: the search path), with parameters
  atlas-run check PLAYBOOK...                     load and validate without running anything: syntax,
                                                  undefined globals, declarations (a step that changes
                                                  the world needs confirm= or unattended=)
  atlas-run test [PATH...]                        run *_test.lua files (default tests/)
  atlas-run scenarios                             the mock-world scenarios that ship
  atlas-run runs                                  recent runs: playbook, status, who, where, when
  atlas-run show RUN                              one run's timeline, from its journal
  atlas-run drills [PLAYBOOK]                     past drills: recovery against the RTO, and its trend
                                                  (--mock: the mock world's drills)
  atlas-run unlock RUN|LOCK                       release a shared run lock (a dead machine's)
  atlas-run new NAME                              write playbooks/NAME.lua and tests/NAME_test.lua to start from
  atlas-run -e CODE                               run a Lua chunk with `atlas` loaded
  atlas-run --help PLAYBOOK                       a playbook's parameters and steps

PLAYBOOK is a file, or a name (dr_region_outage) looked up in ./playbooks, then in each directory of
$ATLAS_PLAYBOOK_PATH, then in the playbooks installed with atlas-run (<prefix>/share/atlas-run/playbooks).
Parameters are typed and declared by the playbook; `atlas-run list` shows them.

Options:
  --mock               run against the in-process mock world (healthy reference environment)
  --scenario NAME|FILE the mock world with faults (implies --mock); see `atlas-run scenarios`
  --dry-run            change nothing: reads are made; mutating AWS calls, HTTP methods other than
                       GET/HEAD and commands are printed, not made; SQL runs in a read-only
                       transaction that is rolled back, and each write PostgreSQL refuses is printed
  --yes                pre-approve confirmations (without a terminal and without --yes they are refused)
  --resume             continue the last failed or interrupted run of this playbook: the same run, with its
                       parameters (a different value is refused; give secrets again); completed steps are
                       skipped (a step's check runs again), undone ones run again, no recorded change is repeated
  --rollback           when a step fails, run the undo of each step that changed the world, newest first
  --report FILE        write a drill report: Markdown, JSON (FILE ends in .json) or an HTML page with an
                       SVG timeline (FILE ends in .html; no scripts, nothing fetched): the world,
                       who ran it where, parameters, timeline, changes before and after, confirmations,
                       failures, verdict
  --drill              time the recovery: from the run's start (or incident_start=2026-12-01T21:40:00Z,
                       given after the playbook) to the playbook's recovery point, plus what the engine
                       cannot see (Route53 detection, DNS TTL); exit 5 when it misses --rto
  --rto DURATION       the recovery time objective of a drill (15m, 900s, 1h; implies --drill)
  --predict            predict the drill's recovery time instead of running it: the playbook runs in the
                       mock world (--scenario, default healthy) whose latencies (health-check detection,
                       DNS TTL, Route53 sync, ECS task start, RDS failover, promotion, snapshot copy and
                       restore) make up its waits; prints the critical path, the engine's share per wait,
                       and the steps that could overlap (--log-format json: one JSON document); exit 5
                       when the prediction misses --rto; nothing outside the process is touched
  --notify TARGET      when a drill fails or misses its RTO, send its verdict and where its report is to
                       sns:arn:aws:sns:REGION:ACCOUNT:TOPIC or a webhook https://... (JSON {"text": ...})
  --state-dir DIR      where journals and run locks live (default $ATLAS_STATE_DIR or ~/.local/state/atlas-run)
  --state s3://BUCKET/PREFIX   share journals and saved DNS records with the team, in S3 ($ATLAS_STATE)
  --lock-table NAME    the DynamoDB table of shared run locks, hash key LockID ($ATLAS_LOCK_TABLE)
  --log-format FORMAT  text (a timeline, the default) or json (one event per line)
  --quiet              only warnings, errors and the result
  --verbose            every outside call, with its duration
  --version            print the version
  --help               this text

Examples:
  atlas-run --scenario eu-west-1-outage --yes dr_region_outage     rehearse the failover in the mock world
  atlas-run --dry-run dr_region_outage failed_region=eu-west-1     see what a real failover would change
  atlas-run --yes --report drill.md dr_region_outage force=true    a planned drill, with its report
  atlas-run --scenario eu-west-1-outage --yes --rto 15m --report drill.json dr_region_outage
                                                                   a drill timed against a 15-minute RTO
  atlas-run --scenario eu-west-1-outage --drill --predict dr_region_outage
                                                                   the failover's recovery time, predicted
  atlas-run --resume dr_region_outage                              continue after a crash or Ctrl-C
  atlas-run --state s3://ops-state/atlas --lock-table atlas-locks --resume dr_region_outage
                                                                   continue a run another machine started
  atlas-run diag_health                                            all regions against the alert thresholds

Exit codes:
  0 ok   1 the playbook failed (or its --report could not be written)   2 bad usage or bad input
  (also: --resume with a different parameter, an unusable state directory)   3 refused or
  interrupted (a declined confirmation, Ctrl-C: final, a playbook cannot catch it)   4 another run
  holds the run lock, nothing else   5 a check found a critical condition, or a drill missed its
  RTO   70 internal error

Environment:
  AWS_PROFILE, AWS_REGION, AWS_ACCESS_KEY_ID, ...   the AWS SDK credential chain
  AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>      endpoint overrides (for example a moto server)
  ATLAS_STATE_DIR      journals and locks       ATLAS_LUA_PATH   load lua/ sources from here (development)
  ATLAS_STATE, ATLAS_LOCK_TABLE   the shared store  ATLAS_LOCK_LEASE  seconds a shared lock lives unrenewed (120)
  ATLAS_PLAYBOOK_PATH  directories of a team's playbooks, colon-separated, searched after ./playbooks

Files:
  $ATLAS_STATE_DIR, else $XDG_STATE_HOME/atlas-run, else ~/.local/state/atlas-run: journals (runs/<id>.json),
  <playbook>.last, saved DNS records (dns/), run locks (<lock>.lock); mock-world runs use its mock/ subdirectory
  ~/.aws/config, ~/.aws/credentials   AWS profiles, as the AWS CLI reads them
  <prefix>/share/atlas-run/playbooks   the playbooks installed with atlas-run
]]

local function usage_error(fmt, ...) errors.raise { kind = "usage", message = string.format(fmt, ...) } end

local function report_error(err)
    io.stderr:write("atlas-run: ", log.redact(errors.message(err)), "\n")
    if errors.is(err, "usage") then io.stderr:write("Try 'atlas-run --help'.\n") end
end

-- Options that take a value, and flags.
local VALUED = {
    ["--scenario"] = "scenario",
    ["--log-format"] = "log_format",
    ["--report"] = "report",
    ["--state-dir"] = "state_dir",
    ["--state"] = "state",
    ["--lock-table"] = "lock_table",
    ["--rto"] = "rto",
    ["--notify"] = "notify",
    ["-e"] = "code",
}
local FLAGS = {
    ["--mock"] = "mock",
    ["--dry-run"] = "dry_run",
    ["--yes"] = "yes",
    ["-y"] = "yes",
    ["--quiet"] = "quiet",
    ["-q"] = "quiet",
    ["--verbose"] = "verbose",
    ["-v"] = "verbose",
    ["--version"] = "version",
    ["--help"] = "help",
    ["-h"] = "help",
    ["--resume"] = "resume",
    ["--rollback"] = "rollback",
    ["--drill"] = "drill",
    ["--predict"] = "predict",
}

-- cli.parse(argv) -> options, positional arguments
function M.parse(argv)
    local options, positional = {}, {}
    local i = 1
    local only_positional = false
    while i <= #argv do
        local a = argv[i]
        local name, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
        name = name or a
        if only_positional then
            positional[#positional + 1] = a
        elseif a == "--" then
            only_positional = true
        elseif VALUED[name] then
            local value = inline
            if value == nil then
                i = i + 1
                value = argv[i]
            end
            if value == nil then usage_error("option %s needs a value", name) end
            options[VALUED[name]] = value
        elseif FLAGS[a] then
            options[FLAGS[a]] = true
        elseif a:sub(1, 1) == "-" and a ~= "-" then
            usage_error("unknown option %s", a)
        else
            positional[#positional + 1] = a
        end
        i = i + 1
    end
    if options.log_format and options.log_format ~= "text" and options.log_format ~= "json" then
        usage_error("--log-format takes text or json, not %s", options.log_format)
    end
    return options, positional
end

local function configure_output(options)
    log.configure {
        format = options.log_format or "text",
        level = options.verbose and "debug" or options.quiet and "warn" or "info",
    }
    -- atlas.state reads its configuration from the environment, as child processes do.
    if options.state_dir then sys.setenv("ATLAS_STATE_DIR", options.state_dir) end
    if options.state then sys.setenv("ATLAS_STATE", options.state) end
    if options.lock_table then
        local shared = options.state or os.getenv("ATLAS_STATE") or ""
        if not shared:match("^s3://") then
            usage_error(
                "--lock-table locks a shared store: give --state s3://BUCKET/PREFIX too (a local directory locks with flock)"
            )
        end
        sys.setenv("ATLAS_LOCK_TABLE", options.lock_table)
    end
end

-- Finds PLAYBOOK as given, or by name on the search path (atlas.run.playbook owns it).
local function resolve_playbook(name)
    local path, err = require("atlas.run.playbook").find(name)
    if not path then usage_error("%s", err) end
    return path
end

local function parse_assignments(args)
    local values = {}
    for _, a in ipairs(args) do
        local name, value = a:match("^([%a_][%w_]*)=(.*)$")
        if not name then usage_error("expected name=value after the playbook, got %q", a) end
        if values[name] ~= nil then usage_error("parameter %s given twice", name) end
        values[name] = value
    end
    return values
end

-- take_run_lock(pb, journal) -> lock (nil when none is needed) | nil, exit code.
-- Only another run's lock is exit 4; a store that cannot be used is exit 2.
local function take_run_lock(pb, journal)
    local runtime = require "atlas.run.runtime"
    if runtime.dry_run then return nil end
    local usable, why = require("atlas.state").open():check()
    if not usable then
        io.stderr:write(string.format("atlas-run: %s cannot use the state store: %s\n", pb.name, log.redact(why)))
        return nil, EXIT.usage
    end
    if not pb.lock then return nil end
    local lock, holder, code = require("atlas.run.journal").lock(pb.lock, { run_id = journal.run_id })
    if lock then return lock end
    if code ~= "LockHeld" then
        io.stderr:write(string.format("atlas-run: %s cannot take the run lock %q: %s\n", pb.name, pb.lock, holder))
        return nil, EXIT.usage
    end
    io.stderr:write(
        string.format("atlas-run: %s cannot start: another run holds the lock %q (%s)\n", pb.name, pb.lock, holder)
    )
    return nil, EXIT.locked
end

-- Says how the drill went and returns the run's exit code: a drill whose run
-- succeeded but that missed its RTO (or never reached its recovery point) is
-- critical, exit 5; a run that failed keeps its own code.
local function announce_drill(outcome, code)
    local recovered = outcome.recovery_seconds and log.seconds_text(outcome.recovery_seconds) or "not recovered"
    local target = outcome.rto_seconds and log.seconds_text(outcome.rto_seconds) or "none"
    local line = string.format(
        "drill %s: recovery %s, RTO %s%s",
        outcome.verdict,
        recovered,
        target,
        outcome.reason and ("; " .. outcome.reason) or ""
    )
    if outcome.verdict == "pass" then
        log.info("%s", line)
        return code
    end
    log.error("%s", line)
    return code == EXIT.ok and EXIT.critical or code
end

-- --predict: the recovery time the playbook would take, from a simulation.
local PREDICT_ALONE = { "report", "resume", "rollback", "notify", "state", "lock_table" }

local function predict(options, pb, args)
    for _, name in ipairs(PREDICT_ALONE) do
        if options[name] then
            usage_error("--predict runs nothing outside this process: drop --%s", (name:gsub("_", "-")))
        end
    end
    local drill = require("atlas.run.drill").prepare(pb, { drill = true, rto = options.rto, dry_run = options.dry_run }, args)
    local params = require("atlas.run.params").parse(pb.param_specs, args, pb.validate)
    local predict_mod = require "atlas.run.predict"
    local prediction = predict_mod.run(pb, params)
    prediction.rto_seconds = drill.rto
    if options.log_format == "json" then
        local json = require "atlas.json"
        io.stdout:write(json.encode(prediction), "\n")
    else
        io.stdout:write(predict_mod.render(prediction, drill.rto))
    end
    if drill.rto and prediction.recovery_seconds > drill.rto then return EXIT.critical end
    return EXIT.ok
end

local function run_playbook(options, positional)
    local playbook = require "atlas.run.playbook"
    local params_mod = require "atlas.run.params"
    local journal_mod = require "atlas.run.journal"
    local runtime = require "atlas.run.runtime"

    runtime.setup {
        mock = options.mock or options.predict,
        scenario = options.scenario,
        dry_run = options.dry_run,
        yes = options.yes,
    }
    -- Masked from the first line of output, not from the first AWS call.
    require("atlas.aws.credentials").register_environment()

    local path = resolve_playbook(positional[1])
    local pb = playbook.load(path)
    local args = parse_assignments({ table.unpack(positional, 2) })
    if options.predict then return predict(options, pb, args) end
    local drill = require("atlas.run.drill").prepare(pb, options, args)
    local notify_target = options.notify and require("atlas.run.notify").parse(options.notify)
    if notify_target and not drill then usage_error("--notify tells of a drill that fails: give --drill or --rto too") end

    local journal, resumed
    if options.resume then
        local record, err = journal_mod.last(pb.name)
        if not record then usage_error("--resume: %s", err or ("no earlier run of " .. pb.name .. " to resume")) end
        if record.status == "ok" then
            usage_error("--resume: the last run of %s (%s) completed; nothing to resume", pb.name, record.run_id)
        end
        args = playbook.resume_args(pb, record, args)
        resumed = record
    end
    local params = params_mod.parse(pb.param_specs, args, pb.validate)
    if resumed then
        journal = journal_mod.resume(pb, resumed)
        journal.params = params
    else
        journal = journal_mod.new(pb, params)
    end

    if options.report then
        -- Refused before anything runs: a failover must not end by finding
        -- that its report cannot be written.
        local usable, why = require("atlas.run.report").check_path(options.report)
        if not usable then usage_error("--report %s: %s", options.report, why) end
    end
    local lock, refusal = take_run_lock(pb, journal)
    if refusal then return refusal end
    -- Closed on every way out, an error included: a shared lock would
    -- otherwise stay held until its lease runs out.
    local held <close> = lock
    local report = require "atlas.run.report"
    if options.report or drill then report.start() end
    local result = playbook.run(
        pb,
        params,
        { journal = journal, resumed = resumed and resumed.run_id, rollback = options.rollback }
    )
    local code = result.exit
    local summary = (options.report or drill) and report.summary()
    local outcome = drill and require("atlas.run.drill").measure(drill, result, summary.parts)
    if outcome then
        code = announce_drill(outcome, code)
    end
    local model = (options.report or drill) and report.model(pb, result, summary, outcome)
    local locations = {}
    if drill then
        -- The drill history (`atlas-run drills`): kept like the report was asked.
        local kept, why = require("atlas.run.drill").keep(model, report.render(model, "json"))
        locations[#locations + 1] = kept
        if not kept then
            io.stderr:write(string.format("atlas-run: cannot keep the drill in the history: %s\n", log.redact(why)))
            if code == EXIT.ok then code = EXIT.failed end
        end
    end
    if options.report then
        local written, err = report.write(options.report, model)
        if not written then
            io.stderr:write(string.format("atlas-run: cannot write the report %s: %s\n", options.report, err))
            -- The report is part of what was asked: a run without it did not succeed.
            if code == EXIT.ok then code = EXIT.failed end
        else
            table.insert(locations, 1, sys.realpath(options.report) or options.report)
        end
    end
    if notify_target and outcome and outcome.verdict ~= "pass" then
        local sent, why = require("atlas.run.notify").send(notify_target, model, locations)
        if sent then
            log.info("notified %s", notify_target.where)
        else
            -- The drill already exits non-zero; the notification's failure is said, not hidden.
            io.stderr:write(string.format("atlas-run: cannot notify %s: %s\n", notify_target.where, log.redact(why)))
        end
    end
    if result.error then
        io.stderr:write(
            string.format("atlas-run: %s %s: %s\n", pb.name, result.status, log.redact(errors.message(result.error)))
        )
        if result.status == "interrupted" or result.status == "failed" then
            io.stderr:write(
                string.format(
                    'atlas-run: stopped at step "%s"; `atlas-run --resume %s` continues from there\n',
                    result.step,
                    path
                )
            )
        end
    end
    return code
end

local function print_params(pb)
    local params_mod = require "atlas.run.params"
    for _, spec in ipairs(pb.param_specs) do
        local default = ""
        if spec.default ~= nil then default = " [default " .. params_mod.shown_default(spec) .. "]" end
        print(
            string.format(
                "    %s=%s%s%s%s",
                spec.name,
                params_mod.describe_type(spec),
                default,
                spec.required and " (required)" or "",
                spec.description and ("  " .. spec.description) or ""
            )
        )
    end
end

-- Lists the playbooks of one directory; a name found in an earlier directory
-- of the search path hides a later one, as it does for `atlas-run NAME`.
local function list_dir(playbook, dir, shown, explicit)
    local names, err = sys.readdir(dir)
    if not names then
        if explicit then usage_error("cannot list %s", err) end
        -- ./playbooks is only there in a checkout; a missing directory of
        -- ATLAS_PLAYBOOK_PATH is a typo worth a word.
        if dir ~= "playbooks" then io.stderr:write("atlas-run: ATLAS_PLAYBOOK_PATH: cannot list " .. err .. "\n") end
        return EXIT.ok
    end
    local code = EXIT.ok
    for _, name in ipairs(names) do
        if name:match("%.lua$") and not shown[name] then
            shown[name] = true
            local ok, pb = pcall(playbook.load, dir .. "/" .. name)
            if ok then
                print(string.format("%s  (%s/%s)", pb.name, dir, name))
                print("    " .. pb.description)
                print_params(pb)
            elseif errors.is(pb, "interrupted") then
                error(pb, 0)
            else
                print(string.format("%s: INVALID: %s", name, errors.message(pb)))
                code = EXIT.usage
            end
        end
    end
    return code
end

local function list_playbooks(positional)
    local playbook = require "atlas.run.playbook"
    local dirs = positional[2] and { positional[2] } or playbook.search_path()
    local code, shown = EXIT.ok, {}
    for _, dir in ipairs(dirs) do
        code = math.max(code, list_dir(playbook, dir, shown, positional[2] ~= nil))
    end
    return code
end

-- `atlas-run complete playbooks|scenarios|options|params PLAYBOOK`: one word
-- a line, for the shell completion (scripts/atlas-run.bash-completion). It
-- reads the search path, the scenarios and the options from their owners, so
-- the completion never lists what atlas-run would not take.
function complete(positional)
    local what = positional[2]
    local words = {}
    if what == "playbooks" then
        local seen = {}
        for _, dir in ipairs(require("atlas.run.playbook").search_path()) do
            for _, name in ipairs(sys.readdir(dir) or {}) do
                local base = name:match("^(.+)%.lua$")
                if base and not seen[base] then
                    seen[base] = true
                    words[#words + 1] = base
                end
            end
        end
    elseif what == "scenarios" then
        words = require("atlas.mock.scenarios").names()
    elseif what == "options" then
        for option in M.HELP:gmatch("\n  (%-%-[%w-]+)") do
            words[#words + 1] = option
        end
    elseif what == "params" and positional[3] then
        local path = require("atlas.run.playbook").find(positional[3])
        local ok, pb = pcall(require("atlas.run.playbook").load, path or "")
        if path and ok then
            for _, spec in ipairs(pb.param_specs) do
                words[#words + 1] = spec.name .. "="
            end
        end
    else
        usage_error("complete playbooks|scenarios|options|params PLAYBOOK")
    end
    table.sort(words)
    for _, w in ipairs(words) do
        print(w)
    end
    return EXIT.ok
end

-- `atlas-run --help PLAYBOOK`: what it does, what it takes, what it changes.
local function describe_playbook(name)
    local path = resolve_playbook(name)
    local pb = require("atlas.run.playbook").load(path)
    print(string.format("%s  (%s)", pb.name, path))
    print("    " .. pb.description)
    if pb.requires then print("    needs: " .. table.concat(pb.requires, ", ")) end
    print("\nParameters (name=value):")
    if #pb.param_specs == 0 then print("    none") end
    print_params(pb)
    print("\nSteps:")
    for i, step in ipairs(pb.steps) do
        local marks = {}
        if step.mutates then marks[#marks + 1] = "changes the world" end
        if step.confirm == true then
            marks[#marks + 1] = "asks inside the step before it changes anything"
        elseif step.confirm then
            marks[#marks + 1] = "asks: " .. step.confirm
        end
        if step.unattended then marks[#marks + 1] = "runs unattended: " .. step.unattended end
        if step.undo then marks[#marks + 1] = "undoable" end
        if step.check then marks[#marks + 1] = "checked again on --resume" end
        if step.recovery_point then marks[#marks + 1] = "recovery point: a drill's recovery time ends here" end
        print(
            string.format(
                "    %d. %s%s",
                i,
                step.name,
                #marks > 0 and ("  [" .. table.concat(marks, "; ") .. "]") or ""
            )
        )
    end
    return EXIT.ok
end

local function check_playbooks(positional)
    local lint = require "atlas.run.lint"
    if #positional < 2 then usage_error("check needs at least one playbook") end
    local problems = 0
    for i = 2, #positional do
        local path = positional[i]
        local found = lint.check_file(path)
        for _, problem in ipairs(found) do
            print(problem)
        end
        if #found == 0 then print(path .. ": ok") end
        problems = problems + #found
    end
    return problems == 0 and EXIT.ok or EXIT.usage
end

local function list_scenarios()
    local scenarios = require "atlas.mock.scenarios"
    for _, name in ipairs(scenarios.names()) do
        print(string.format("%-24s %s", name, scenarios.description(name)))
    end
    return EXIT.ok
end

-- ---- the run records: runs, show, unlock ----------------------------------------

local function setup_for_records(options)
    require("atlas.run.runtime").setup { mock = options.mock, scenario = options.scenario }
end

-- An outside failure of the store: exit 2 with what and why.
local function store_failure(fmt, ...)
    io.stderr:write("atlas-run: ", log.redact(string.format(fmt, ...)), "\n")
    return EXIT.usage
end

local function utc(t) return t and os.date("!%Y-%m-%d %H:%M:%S", math.floor(t)) or "?" end

M.RUNS_SHOWN = 20

-- `atlas-run runs`: the newest runs first.
local function list_runs(options)
    setup_for_records(options)
    local state = require "atlas.state"
    local store = state.open()
    local items, err = store:list("runs/")
    if not items then return store_failure("cannot list the runs in %s: %s", store:where(), err) end
    table.sort(items, function(a, b) return (a.modified or 0) > (b.modified or 0) end)
    print(string.format("runs in %s (newest first, at most %d):", store:where(), M.RUNS_SHOWN))
    if #items == 0 then print("  none") end
    print(string.format("  %-19s  %-26s  %-11s  %-24s  %s", "STARTED (UTC)", "PLAYBOOK", "STATUS", "WHO@WHERE", "RUN"))
    local journal = require "atlas.run.journal"
    for i = 1, math.min(#items, M.RUNS_SHOWN) do
        local run_id = items[i].key:match("^runs/(.+)%.json$")
        if run_id then
            local record, load_err = journal.load(run_id)
            if record then
                print(
                    string.format(
                        "  %-19s  %-26s  %-11s  %-24s  %s",
                        utc(record.started or items[i].modified),
                        tostring(record.playbook),
                        tostring(record.status),
                        string.format("%s@%s", record.user or "?", record.host or "?"),
                        run_id
                    )
                )
            else
                print(
                    string.format(
                        "  %-19s  %-26s  %-11s  %-24s  %s",
                        utc(items[i].modified),
                        "?",
                        "unreadable",
                        "",
                        run_id .. ": " .. tostring(load_err)
                    )
                )
            end
        end
    end
    return EXIT.ok
end

local function format_params(params)
    local names = {}
    for k in pairs(params or {}) do
        names[#names + 1] = k
    end
    table.sort(names)
    local out = {}
    for _, k in ipairs(names) do
        local v = params[k]
        out[#out + 1] = k .. "=" .. (type(v) == "table" and table.concat(v, ",") or tostring(v))
    end
    return table.concat(out, " ")
end

local function world_short(world)
    if type(world) ~= "table" then return "?" end
    if world.kind == "mock" then return "mock " .. tostring(world.scenario) end
    if world.account then return string.format("%s %s", world.account, tostring(world.region)) end
    return "real"
end

local function maybe_seconds(v) return type(v) == "number" and log.seconds_text(v) or "-" end

-- `atlas-run drills [PLAYBOOK]`: past drills, oldest first, with their
-- recovery against the target and, per playbook, the trend.
local function list_drills(options, positional)
    setup_for_records(options)
    local drill = require "atlas.run.drill"
    local store = require("atlas.state").open()
    local drills, unreadable = drill.history(store)
    if not drills then return store_failure("cannot list the drills in %s: %s", store:where("drills/"), unreadable) end
    local only = positional[2]
    print(string.format("drills in %s (oldest first):", store:where("drills/")))
    local format = "  %-20s  %-20s  %-24s  %-9s  %-9s  %-9s  %s"
    print(string.format(format, "STARTED (UTC)", "PLAYBOOK", "WORLD", "RECOVERY", "RTO", "MARGIN", "VERDICT"))
    local by_playbook, order, shown = {}, {}, 0
    for _, d in ipairs(drills) do
        if not only or d.playbook == only then
            shown = shown + 1
            local recovery, rto = tonumber(d.recovery_seconds), tonumber(d.rto_seconds)
            print(string.format(
                format,
                tostring(d.started_at),
                tostring(d.playbook),
                world_short(d.world),
                maybe_seconds(recovery),
                maybe_seconds(rto),
                (recovery and rto) and ((rto >= recovery and "" or "-") .. log.seconds_text(math.abs(rto - recovery))) or "-",
                tostring(d.verdict)
            ))
            local group = by_playbook[d.playbook]
            if not group then
                group = { drills = 0, passed = 0, recoveries = {} }
                by_playbook[d.playbook] = group
                order[#order + 1] = d.playbook
            end
            group.drills = group.drills + 1
            if d.verdict == "pass" then group.passed = group.passed + 1 end
            if recovery then group.recoveries[#group.recoveries + 1] = recovery end
            group.rto = rto or group.rto
        end
    end
    if shown == 0 then print("  none") end
    for _, name in ipairs(order) do
        local group = by_playbook[name]
        local r = group.recoveries
        local direction, slope = drill.trend(r)
        local trend = #r < 2 and "one recovery so far"
            or string.format(
                "recovery %s%s (%s -> %s)",
                direction,
                direction == "steady" and "" or string.format(" by %s per drill", log.seconds_text(math.abs(slope))),
                log.seconds_text(r[1]),
                log.seconds_text(r[#r])
            )
        local target = ""
        if group.rto and #r > 0 then
            target = string.format(
                "; the last %s the RTO %s",
                r[#r] <= group.rto and "met" or "missed",
                log.seconds_text(group.rto)
            )
        end
        print(string.format("%s: %d drill(s), %d passed; %s%s", name, group.drills, group.passed, trend, target))
    end
    for _, u in ipairs(unreadable) do
        print(string.format("  unreadable: %s: %s", u.key, u.why))
    end
    return EXIT.ok
end

-- `atlas-run show RUN`: one run's timeline, from its journal.
local function show_run(options, positional)
    if not positional[2] then usage_error("show needs a run id (see `atlas-run runs`)") end
    setup_for_records(options)
    local record, err = require("atlas.run.journal").load(positional[2])
    if not record then
        if err and err:match("^no run ") then usage_error("%s", err) end
        return store_failure("%s", err)
    end
    if options.log_format == "json" then
        print(require("atlas.json").encode(record, { indent = 2 }))
        return EXIT.ok
    end
    print(string.format("run %s", record.run_id))
    print(string.format("  playbook  %s (%s)", tostring(record.playbook), tostring(record.path)))
    print(string.format("  status    %s", tostring(record.status)))
    print(string.format("  started   %s UTC by %s@%s", utc(record.started), record.user or "?", record.host or "?"))
    for _, r in ipairs(record.resumes or {}) do
        print(string.format("  resumed   %s UTC by %s@%s", utc(r.at), r.user or "?", r.host or "?"))
    end
    print(string.format("  params    %s", format_params(record.params)))
    print(string.format("  journal   %s", require("atlas.state").open():where("runs/" .. record.run_id .. ".json")))
    print("steps:")
    for i, step in ipairs(record.steps or {}) do
        print(
            string.format(
                "  %-11s %d. %s  (%s UTC%s)",
                tostring(step.status),
                i,
                tostring(step.name),
                utc(step.started),
                step.duration and string.format(", %.1f s", step.duration) or ""
            )
        )
        if step.error then print("              " .. log.redact(tostring(step.error))) end
        -- The world it changed: each mutating call the journal recorded, and
        -- whether its answer came back ("sent" alone: the outcome is unknown).
        for _, call in ipairs(step.calls or {}) do
            if call.mutates then
                print(
                    string.format(
                        "              %s (%s): %s",
                        tostring(call.op),
                        tostring(call.region),
                        tostring(call.status)
                    )
                )
            end
        end
    end
    return EXIT.ok
end

-- `atlas-run unlock RUN|LOCK`: releases a shared run lock whose holder died
-- (it would free itself when its lease runs out). A live lease needs a
-- confirmation: its holder stops at its next renewal.
local function unlock(options, positional)
    local what = positional[2]
    if not what then usage_error("unlock needs a run id or a lock name (the lock-held message names both)") end
    setup_for_records(options)
    require("atlas.run.runtime").yes = options.yes and true or false
    local store = require("atlas.state").open()
    local found, err = store:find_lock(what)
    if not found then
        if err then return store_failure("cannot read the run locks of %s: %s", store:where(), err) end
        print(string.format("no run lock of %s or named %s in %s; nothing to release", what, what, store:where()))
        return EXIT.ok
    end
    if found.live and store.kind ~= "local" then
        require("atlas.run.runtime").confirm(
            string.format(
                "The lock %s is held by %s, whose lease is live. Release it anyway?",
                found.name,
                found.holder
            )
        )
    end
    local ok, unlock_err, code = store:unlock(found)
    if not ok then
        if code == "LiveHolder" then
            io.stderr:write("atlas-run: ", unlock_err, "\n")
            return EXIT.refused
        end
        return store_failure("cannot release the lock %s: %s", found.name, unlock_err)
    end
    print(string.format("released the run lock %s (held by %s)", found.name, found.holder))
    return EXIT.ok
end

local function run_code(code)
    local chunk, err = load(code, "=(-e)", "t")
    if not chunk then usage_error("%s", err) end
    _G.atlas = require "atlas"
    local ok, failure = xpcall(chunk, function(e)
        if errors.is(e) then return e end
        return debug.traceback(errors.message(e), 2)
    end)
    if not ok then
        report_error(failure)
        return errors.is(failure, "interrupted") and EXIT.refused or EXIT.failed
    end
    return EXIT.ok
end

local function dispatch(argv)
    local options, positional = M.parse(argv)
    configure_output(options)
    local commands =
        {
            list = true,
            check = true,
            test = true,
            scenarios = true,
            runs = true,
            show = true,
            unlock = true,
            new = true,
            complete = true,
            drills = true,
        }
    if options.help and positional[1] and not commands[positional[1]] then
        return describe_playbook(positional[1])
    elseif options.help then
        io.stdout:write(string.format(M.HELP, sys.version))
        return EXIT.ok
    elseif options.version then
        print("atlas-run " .. sys.version)
        return EXIT.ok
    elseif options.code then
            require("atlas.run.runtime").setup {
            mock = options.mock,
            scenario = options.scenario,
            dry_run = options.dry_run,
            yes = options.yes,
        }
        return run_code(options.code)
    end
    local command = positional[1]
    if command == nil then
        io.stderr:write(string.format(M.HELP, sys.version))
        return EXIT.usage
    elseif command == "list" then
        return list_playbooks(positional)
    elseif command == "check" then
        return check_playbooks(positional)
    elseif command == "test" then
        return require("atlas.test").main({ table.unpack(positional, 2) }, options)
    elseif command == "scenarios" then
        return list_scenarios()
    elseif command == "runs" then
        return list_runs(options)
    elseif command == "show" then
        return show_run(options, positional)
    elseif command == "drills" then
        return list_drills(options, positional)
    elseif command == "unlock" then
        return unlock(options, positional)
    elseif command == "complete" then
        return complete(positional)
    elseif command == "new" then
        if #positional ~= 2 then usage_error("new needs one playbook name: atlas-run new NAME") end
        for _, path in ipairs(require("atlas.run.new").write(positional[2])) do
            print("wrote " .. path)
        end
        print(string.format("next: atlas-run check playbooks/%s.lua && atlas-run test tests/%s_test.lua", positional[2], positional[2]))
        return EXIT.ok
    end
    return run_playbook(options, positional)
end

-- cli.main(argv) -> exit code
function M.main(argv)
    local ok, result = xpcall(dispatch, function(e)
        if errors.is(e) then return e end
        return debug.traceback(errors.message(e), 2)
    end, argv)
    if ok then return result end
    report_error(result)
    if not errors.is(result) then return EXIT.internal end
    local _, code = exit.of_error(result)
    return code
end

return M
