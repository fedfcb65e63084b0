'''Governed access: the policy document and the engine that enforces it.

The policy file (YAML, ``version: 1``)::

    version: 1
    settings:
      masked_predicates: deny      # deny (default) | allow  -- see "Masked columns" below
    defaults:                      # column rules every role gets, at the lowest precedence
      columns: [{tag: "pii.*", mask: redact}]
    roles:
      <role>:
        inherits: [<role>, ...]
        grants:                    # default deny: nothing is allowed unless granted
          - {datasets: "app.*" | ["app.*", "lake.events"], actions: [select, insert, update, delete, erase]}
          - {topics: "orders.*", actions: [publish, consume, register, declassify, admin]}
          - {lineage: "airflow://*", actions: [write]}   # post OpenLineage events in these job namespaces
        columns:                   # by catalog tag glob and/or column glob ("ssn", "app.customers.ssn")
          - {tag: "pii.email", mask: email_domain}
          - {column: "app.customers.ssn", deny: true}
          - {tag: "pii.note", datasets: "app.*", mask: {sql: "left({col}, 2) || '...'"}}
        row_filters:               # DuckDB SQL over the dataset's own columns + principal.<attr>
          - {datasets: "app.customers", where: "country IN principal.countries"}
        max_rows: 10000            # positive; exposed on Decision for the planner to enforce
        timeout_s: 30
        max_concurrent: 4
    principals:
      <name>: {roles: [<role>, ...], attributes: {countries: [DE, FR]}, kind: user | service}

Every error is a :class:`~headwater.errors.PolicyError` whose message starts with
``<source>:<line>:`` and whose ``line`` attribute points at the offending node (unknown keys,
actions, masks, roles, inheritance cycles, unparsable or unsafe filters and custom masks,
duplicate keys, bad YAML). ``Policy.version`` is a hash of the normalised document (comments
and formatting do not change it); ``Policy.diff(other)`` lists changes as ``+``/``-``/``~`` lines.

Masks (each is a sqlglot expression, DuckDB dialect, see ``PORTABLE`` per store):
``none``; ``null`` (typed NULL); ``redact`` (``'****'`` for text, typed NULL otherwise);
``last4`` (``'****' || last four characters``, ``'****'`` when the value has four or fewer);
``email_domain`` (``'***@' || domain``, ``'****'`` without an ``@``); ``year`` (the year as an
integer); ``hash`` (``sha256(k_out || sha256(k_in || value))``: a nested keyed SHA-256 over hex
text, because DuckDB has no HMAC function; keys are derived from the engine's ``hmac_key`` with
HMAC-SHA256 and bound as parameters, never inlined; stable for joins across datasets);
``tokenise`` (``'tok_' || left(sha256(k_tok || value), 24)``, a shorter deterministic token under
its own key); ``redact_pii`` (free text with only the PII spans inside it replaced by
``<EMAIL>``, ``<PHONE>`` ... through :func:`headwater.pii.redact_pii`, evaluated in DuckDB; typed
NULL for non-text columns); or a custom expression with a ``{col}`` placeholder (no tables, subqueries,
placeholders or outside functions). NULL stays NULL.

How rules combine

* **Inheritance** specialises: a role gets its ancestors' grants and row filters (filters AND-ed,
  so a child can only narrow rows) and their column rules, but for any column the nearest level
  that has a matching rule decides (own rules, then parents, then grandparents ..., then
  ``defaults``), so ``support_eu`` may unmask what ``analyst`` masks. Several matching rules on
  the same level: the most restrictive wins (deny > null > redact > hash = tokenise > last4 =
  email_domain = year = custom > none). Limits come from the nearest role that sets them.
* **Several roles** on one principal are a union of views, computed per row: a row is visible
  when any role that grants ``select`` on the dataset lets it through (filters of different roles
  are OR-ed; a role without a filter on a dataset it can read sees every row), and each column
  shows the least restrictive treatment among the roles whose filter that row passes
  (``CASE WHEN <filter of role A> THEN <A's mask> WHEN ... END``). Taking the least restrictive
  mask globally would leak more than any single role grants (unmasked values of rows only the
  masking role may see); taking the most restrictive would make adding a role take rights away.
  A column denied in every reading role is denied; denied in some, it is NULL on their rows.
  Limits (max_rows, timeout_s, max_concurrent): the most generous of the roles that set one.
* Principals: one that carries roles (from a token or a trusted caller) uses them; otherwise the
  same-named principal's roles in the file. Attributes: the file's, overridden by the
  principal's; ``principal.name`` is always available. Unknown roles grant nothing.

Enforcement (``PolicyEngine.authorize_query``) rewrites every scan of a catalogued dataset,
``app.customers AS c``, into ``(SELECT <masked columns> FROM app.customers AS c WHERE <row
filter>) AS c``. Every reference, in CTEs, subqueries, joins, unions, laterals and windows, goes
through that subquery, so nothing above it ever sees a raw masked value or a filtered-out row.
Attribute values become parameter markers ``param(first_param + i)``; ``x IN principal.list``
expands to one marker per element (portable to SQLite and Snowflake), so the decision cache key
(``cache_key``) carries the list *lengths* but never values, and ``params_for`` rebinds a cached
decision for another principal with the same key.

Denied columns: any reference (including one produced by ``*`` expansion) raises
``AccessDenied`` naming the rule; denied columns are also left out of the masking subquery.
``hidden_columns`` lets the planner drop them from the schema it gives ``qualify`` so that ``*``
expands to the visible columns instead.

Masked columns: because the mask is applied inside the scan subquery, any expression above it
(``length(email)``, ``substr``, ``upper``, aggregates, comparisons) is a function of the masked
value only, which the principal may select anyway: that alone prevents revealing a masked value
through predicates, joins or aggregates, *provided the masking subquery is kept intact*.
``masked_predicates: deny`` (the default) adds a second line of defence for the places where the
subquery is not the whole story: a planner or federation step that pushes an outer WHERE below the
subquery onto raw columns, a store optimiser bug, or masks whose output still carries signal
(``year`` lets ``WHERE birthday = 1990`` select people by birth year; ``last4`` and
``email_domain`` allow grouping people by the revealed part). In that mode a masked column (and
anything derived from it through CTEs, derived tables, set operations and scalar subqueries) may
be selected, aggregated and passed to functions in the select list, but may not appear in WHERE,
JOIN ON, GROUP BY (also by ordinal), HAVING, QUALIFY, ORDER BY (also by alias or ordinal) or a
window's PARTITION BY / ORDER BY. ``hash`` and ``tokenise`` are exempt: equality on keyed
pseudonyms reveals only equality, which is what they are for (joins and grouping). Row filters
themselves run on raw values inside the scan, as policy intends.

Statement governance (before grants) fails closed by construction; every rule is an allow-list:

* **Statements**: ``sql()`` takes one query (``SELECT``, set operations, ``VALUES``, ``WITH``);
  the derive path (``INSERT ... SELECT``, ``CREATE TABLE ... AS``) is parsed apart and runs its
  ``SELECT`` through the same door. Every syntax node must be listed
  (``headwater.policy._functions.NODES``): no nested DML or DDL, ``PRAGMA``, ``SET``,
  ``ATTACH``, ``COPY``, ``SELECT ... INTO``, ``FOR UPDATE``, session variables, ``::regclass``,
  ``PIVOT``, time travel.
* **Functions**, per dialect (``FUNCTIONS``: sqlglot function classes; ``NAMES``: functions
  sqlglot does not model, by name): pure scalar, aggregate and window functions only; anything
  unknown is ``QueryRejected`` naming it (rule ``function-allow-list``). The query is checked as
  written (DuckDB) and again after transpilation to the store's dialect, parsed back, because
  sqlglot may render a function as a store-native one (``query_to_xml``, ``setval``, ``lo_*``,
  ``pg_*``, ``current_setting``, ``read_*``, ``glob`` ... are never listed). Row filters and
  custom masks are held to the same lists.
* **Names resolve by scope** (``_scopes.resolve``, shared by the planner and the engine): a
  table reference is a CTE only where SQL scoping makes that CTE visible (same or enclosing
  ``WITH``, defined before it, itself only under ``RECURSIVE``; agreed with sqlglot's scopes),
  else a catalogued ``<store>.<table>``, else ``QueryRejected`` (rule ``catalog-only``): bare
  names, quoted file paths and globs, table functions, three-part names, system catalogs and
  Headwater's own ``hw_*``/``_hw_*`` tables (rule ``system-catalog``), with or without a policy.
  The planner renames every CTE and its references to ``hw_cte_<n>`` so no store can resolve a
  reference differently.
* **Every base-table reference is rewritten or the query is rejected**: the engine marks the
  scans it produced (a sentinel in node metadata that SQL comments cannot forge), and a final
  pass over each tree a store will run (the plan, each page, each federation fetch) accepts
  only engine-marked scans (planner-resolved ones without a policy), federation views and
  visible CTEs; the SQL rendered for Postgres, SQLite or Snowflake must read exactly the
  physical tables the plan placed. Anything else is ``QueryRejected`` (rule
  ``unrewritten-reference``) and never runs.
* **Bad input**: SQL over 1,000,000 characters, trees deeper than 200 levels, numeric literals
  over 100 characters, positions and row counts beyond 64 bits are ``QueryRejected``
  (``sql-size``, ``sql-depth``); the reserved marker name ``__hwparam`` and ``sqlglot.meta``
  comments may not appear (``reserved-name``).

Writes (``authorize_write``): a role must grant the action, grant ``select`` and read every
written column unmasked, and every given row must pass that role's row filters (checked in DuckDB
over the Arrow rows; a missing filter column counts as NULL, i.e. outside). ``row_filter`` returns
the predicate to AND into ``UPDATE``/``DELETE`` statements.
'''

from headwater.policy._engine import Decision, PolicyEngine
from headwater.policy._masks import PORTABLE
from headwater.policy._model import ACTIONS, MASKS, RESOURCE_ACTIONS, Policy, load_policy

__all__ = ["ACTIONS", "MASKS", "PORTABLE", "RESOURCE_ACTIONS", "Decision", "Policy", "PolicyEngine", "load_policy"]
