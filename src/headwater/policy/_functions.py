"""What a query may contain, as data: syntax nodes, functions per store dialect.

Allow-lists, not deny-lists: a sqlglot node class, function class or function name that is not
listed here is rejected (:func:`headwater.policy._governance.check_tree`), so a new sqlglot
release or a store-native function nobody reviewed fails closed. Allowed are pure scalar,
aggregate and window functions (random values and the clock included); never anything with side
effects, I/O (files, URLs, other databases), settings, variables, sequences, large objects,
XML/query-running functions, sleeps, or catalog, session and system information.

Three lists per dialect (``duckdb`` is the SDK's and the federation engine's; ``postgres``,
``sqlite`` and ``snowflake`` are checked on the tree after transpilation, because sqlglot may
render a function as a store-native one):

* :data:`NODES`: the syntax (queries, clauses, operators, literals, types) a query may use;
* :data:`FUNCTIONS`: ``exp.Func`` subclasses, by class;
* :data:`NAMES`: functions sqlglot does not model (``exp.Anonymous``), by lower-case name.

Names of classes this sqlglot version lacks are skipped (so an upgrade cannot fail the import).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

__all__ = ["DIALECTS", "FUNCTIONS", "NAMES", "NODES", "classes"]

DIALECTS = ("duckdb", "postgres", "sqlite", "snowflake")


def classes(names: str) -> frozenset[type[exp.Expression]]:
    """The sqlglot expression classes named (whitespace separated) that this version has."""
    out = set()
    for name in names.split():
        cls = getattr(exp, name, None)
        if isinstance(cls, type) and issubclass(cls, exp.Expression):
            out.add(cls)
    return frozenset(out)


NODES = classes("""
    Select Union Intersect Except Subquery Values With CTE From Join Where Group Having Qualify
    Order Ordered Limit Offset Fetch Distinct Window WindowSpec Lateral Table TableAlias
    TableSample Cube Rollup GroupingSets Tuple Lambda Filter WithinGroup IgnoreNulls RespectNulls
    HavingMax
    Alias Aliases Column Identifier Star Dot Bracket Slice Paren Kwarg PropertyEQ
    Literal Boolean Null Var HexString ByteString BitString RawString National UnicodeString
    Interval IntervalSpan DataType DataTypeParam ColumnDef
    Add Sub Mul Div IntDiv Mod Neg Not DPipe BitwiseAnd BitwiseOr BitwiseXor BitwiseNot
    BitwiseLeftShift BitwiseRightShift
    EQ NEQ GT GTE LT LTE NullSafeEQ NullSafeNEQ Is In Between Like ILike Glob SimilarTo Escape
    All Any AtTimeZone Overlaps
    JSONPath JSONPathKey JSONPathRoot JSONPathSubscript JSONPathWildcard JSONPathSlice
    JSONPathSelector JSONPathUnion JSONPathFilter JSONPathRecursive
""")
"""Syntax every dialect may use. Not here, so rejected: statements and their parts (DML, DDL,
``COPY``, ``ATTACH``, ``PRAGMA``, ``SET``, ``SELECT ... INTO``, ``FOR UPDATE``), session
parameters and variables (``@@x``, ``$x``), object identifiers (``::regclass``), hints, time
travel (``AT``/``BEFORE``, ``FOR SYSTEM_TIME``), ``PIVOT``, ``MATCH_RECOGNIZE``, ``CONNECT BY``;
DuckDB's ``COLUMNS(...)`` and ``#n`` (they name columns without a column reference, which the
masked-predicate checks look for)."""

_PURE = """
    And Or Xor Pow Case If Cast TryCast Try Coalesce Nullif Nvl2 Greatest Least EqualNull
    DecodeCase Collate Convert CastToStrType Exists Typeof RegexpLike WidthBucket RangeBucket
    Float64 Int64 LaxBool LaxFloat64 LaxInt64 LaxString ToBoolean IsArray IsNullValue JSONCast
    GetIgnoreCase WeekStart ObjectTransform Uuid Rand Randn ToVariant

    AnyValue ApproxDistinct ApproxQuantile ApproxQuantiles ApproxTopK ApproxTopSum ArgMax ArgMin
    ArrayAgg ArrayConcatAgg ArrayUnionAgg ArrayUniqueAgg Avg Corr Count CountIf CovarPop
    CovarSamp CumeDist DenseRank First FirstValue GroupConcat Grouping GroupingId HashAgg Hll
    Kurtosis Lag Last LastValue Lead LogicalAnd LogicalOr Max Median Min Mode NthValue Ntile
    ObjectAgg PercentRank PercentileCont PercentileDisc Quantile Rank RegrAvgx RegrAvgy RegrCount
    RegrIntercept RegrR2 RegrSlope RegrSxx RegrSxy RegrSyy RegrValx RegrValy RowNumber Skewness
    Stddev StddevPop StddevSamp Sum Variance VariancePop BitwiseAndAgg BitwiseOrAgg BitwiseXorAgg
    BoolxorAgg JSONArrayAgg JSONObjectAgg JSONBObjectAgg

    Abs Acos Acosh Asin Asinh Atan Atan2 Atanh Cbrt Ceil Cos Cosh CosineDistance Cot Coth Csc Csch
    Degrees DotProduct EuclideanDistance Exp Factorial Floor Getbit IsInf IsNan
    JarowinklerSimilarity Ln Log ManhattanDistance Nanvl Negative Pi Radians Rint Round SafeAdd
    SafeDivide SafeMultiply SafeNegate SafeSubtract Sec Sech Sign Sin Sinh Sqrt Tan Tanh Trunc
    BitwiseCount Booland Boolnot Boolor

    Ascii BitLength ByteLength Chr Concat ConcatWs Contains EndsWith Format FromBase FromBase64
    FromBase32 Hex Initcap IsAscii Left Length Levenshtein Lower LowerHex MD5 MD5Digest
    MD5NumberLower64 MD5NumberUpper64 Normalize NumberToStr Overlay Pad RegexpCount
    RegexpExtract RegexpExtractAll RegexpFullMatch RegexpILike RegexpInstr RegexpReplace
    RegexpSplit RegexpSubstr Repeat Replace Reverse Right RtrimmedLength SHA SHA1Digest SHA2
    SHA2Digest Soundex Space Split SplitPart StandardHash StartsWith StrPosition StrToMap String
    Strtok Substring SubstringIndex ToBase32 ToBase64 ToBinary ToChar ToCodePoints ToDouble
    ToNumber Translate Trim Unhex Unicode Upper Base64DecodeBinary Base64DecodeString
    Base64Encode Decode Encode HexDecodeString TryBase64DecodeBinary TryBase64DecodeString
    TryHexDecodeBinary TryHexDecodeString ParseNumeric

    AddMonths ConvertTimezone CurrentDate CurrentDatetime CurrentTime CurrentTimestamp
    CurrentTimestampLTZ Date DateAdd DateBin DateDiff DateFromParts DateFromUnixDate
    DateStrToDate DateSub DateToDateStr DateToDi DateTrunc Datetime DatetimeAdd DatetimeDiff
    DatetimeSub DatetimeTrunc Day DayOfMonth DayOfWeek DayOfWeekIso DayOfYear Dayname DiToDate
    Extract FromISO8601Date FromISO8601Timestamp GenerateDateArray GenerateTimestampArray Hour
    JustifyDays JustifyHours JustifyInterval LastDay Localtime Localtimestamp MakeInterval Minute
    Month Monthname MonthsBetween NextDay ParseDatetime ParseTime PreviousDay Quarter Second
    StrToDate StrToTime StrToUnix Systimestamp Time TimeAdd TimeDiff TimeFromParts TimeSlice
    TimeStrToDate TimeStrToTime TimeStrToUnix TimeSub TimeToStr TimeToTimeStr TimeToUnix
    TimeTrunc Timestamp TimestampAdd TimestampDiff TimestampFromParts TimestampSub TimestampTrunc
    ToDays TsOrDiToDi TsOrDsAdd TsOrDsDiff TsOrDsToDate TsOrDsToDateStr TsOrDsToDatetime
    TsOrDsToTime TsOrDsToTimestamp UnixDate UnixMicros UnixMillis UnixSeconds UnixToStr
    UnixToTime UnixToTimeStr Week WeekOfYear Year YearOfWeek YearOfWeekIso

    Array ArrayAll ArrayAny ArrayAppend ArrayCompact ArrayConcat ArrayConstructCompact
    ArrayContainedBy ArrayContains ArrayContainsAll ArrayDistinct ArrayExcept ArrayFilter
    ArrayFirst ArrayInsert ArrayIntersect ArrayLast ArrayMax ArrayMin ArrayOverlaps ArrayPosition
    ArrayPrepend ArrayRemove ArrayRemoveAt ArrayReverse ArraySize ArraySlice ArraySort ArraySum
    ArrayToString ArraysZip GenerateSeries ExplodingGenerateSeries List Map MapCat
    MapContainsKey MapDelete MapFromEntries MapInsert MapKeys MapPick MapSize Reduce
    StringToArray StrtokToArray Struct StructExtract ToArray ToMap Transform VarMap StarMap
    Unnest Explode Posexplode

    JSONArray JSONArrayAppend JSONArrayContains JSONArrayInsert JSONBContains
    JSONBContainsAllTopKeys JSONBContainsAnyTopKeys JSONBContainsTopKey JSONBDeleteAtPath
    JSONBExists JSONBExtract JSONBExtractScalar JSONBPathExists JSONBool JSONExists JSONExtract
    JSONExtractArray JSONExtractScalar JSONFormat JSONKeys JSONObject JSONRemove JSONSet
    JSONStripNulls JSONType ParseJSON CheckJson FromJson JSONValueArray
"""

FUNCTIONS: Mapping[str, frozenset[type[exp.Expression]]] = {
    # DuckDB: flatten() flattens a list of lists (on Snowflake FLATTEN is a table function).
    "duckdb": classes(_PURE + " Flatten"),
    "postgres": classes(_PURE),
    "sqlite": classes(_PURE),
    "snowflake": classes(_PURE),
}
"""Function classes per target dialect. Not here, so rejected: file and table functions
(``read_csv``, ``FLATTEN`` on Snowflake, generators), sequences (``NEXT VALUE FOR``), the
``CURRENT_USER``/``CURRENT_ROLE``/``CURRENT_SCHEMA``/``VERSION`` family, AI and ML model calls,
XML functions, encryption and compression with passphrases, ``TO_FILE``."""

_DUCKDB_NAMES = """
    add age aggregate alias arbitrary arg_max_null arg_min_null array_aggr array_aggregate
    array_apply array_cosine_distance array_cosine_similarity array_cross_product array_distance
    array_dot_product array_extract array_grade_up array_has_any array_indexof
    array_inner_product array_negative_dot_product array_negative_inner_product array_pop_back
    array_pop_front array_push_back array_push_front array_reduce array_resize array_select
    array_to_json array_transform array_unique array_value array_where array_zip bar base64 bin
    bit_count bit_position bitstring bitstring_agg can_cast_implicitly cardinality century
    constant_or_null count_star create_sort_key current_localtime damerau_levenshtein date_part
    date_sub datepart datesub decade divide element_at entropy enum_code enum_first enum_last
    enum_range enum_range_boundary epoch_ns epoch_us equi_width_bins era error even favg fdiv
    fmod format_bytes formatreadabledecimalsize formatreadablesize from_binary from_json_strict
    fsum gamma gcd generate_subscripts geomean geometric_mean get_current_timestamp grade_up
    greatest_common_divisor hamming hash histogram histogram_exact ilike_escape
    is_histogram_other_bin isfinite isoyear jaccard jaro_similarity json_array_length
    json_contains json_exists json_group_array json_group_object json_group_structure
    json_merge_patch json_pretty json_quote json_structure json_transform json_transform_strict
    json_valid json_value julian kahan_sum kurtosis_pop lcm least_common_multiple left_grapheme
    length_grapheme lgamma like_escape list_aggr list_aggregate list_any_value list_apply
    list_approx_count_distinct list_avg list_bit_and list_bit_or list_bit_xor list_bool_and
    list_bool_or list_cat list_cosine_similarity list_count list_dot_product list_element
    list_entropy list_extract list_first list_grade_up list_has_all list_histogram list_indexof
    list_inner_product list_intersect list_kurtosis list_kurtosis_pop list_last list_mad
    list_median list_mode list_negative_dot_product list_negative_inner_product list_pack
    list_position list_product list_reduce list_resize list_reverse list_select list_sem
    list_skewness list_slice list_stddev_pop list_stddev_samp list_string_agg list_sum
    list_unique list_var_pop list_var_samp list_where list_zip mad make_timestamp_ms
    make_timestamp_ns make_timestamptz map_concat map_contains map_contains_entry
    map_contains_value map_entries map_extract map_extract_value map_values md5_number
    md5_number_lower md5_number_upper mean microsecond millennium millisecond mismatches
    multiply nanosecond nextafter nfc_normalize normalized_interval not_ilike_escape
    not_like_escape now octet_length ord parse_dirname parse_dirpath parse_filename parse_path
    prefix printf product regexp_escape regexp_split_to_array regexp_split_to_table
    reservoir_quantile right_grapheme round_even roundbankers row row_to_json sem set_bit signbit
    strip_accents strlen struct_concat struct_contains struct_extract_at struct_has
    struct_indexof struct_insert struct_position struct_update substring_grapheme subtract
    suffix sum_no_overflow sumkahan timezone timezone_hour timezone_minute to_base to_centuries
    to_decades to_hours to_json to_microseconds to_millennia to_milliseconds to_minutes
    to_months to_quarters to_seconds to_weeks to_years transaction_timestamp try_strptime unbin
    union_extract union_tag union_value url_decode url_encode uuid_extract_timestamp
    uuid_extract_version uuidv4 uuidv7 wavg weekday weighted_avg yearweek
    hw_redact_pii
"""
# ``hw_redact_pii`` is Headwater's own vectorised Python function behind the ``redact_pii`` mask
# (registered on every DuckDB connection); it reads nothing but its argument.

_POSTGRES_NAMES = """
    abs age array_length array_lower array_position array_positions array_to_string array_upper
    array_ndims array_dims array_cat array_append array_prepend array_remove array_replace
    ascii bit_length btrim cardinality cbrt ceil ceiling char_length character_length chr
    clock_timestamp concat concat_ws date_bin date_part date_trunc decode div encode every exp
    extract floor format gcd gen_random_uuid initcap isfinite justify_days justify_hours
    justify_interval lcm left length ln log log10 lower lpad ltrim make_date make_interval
    make_time make_timestamp make_timestamptz md5 min_scale mod now num_nonnulls num_nulls
    octet_length overlay position power quote_literal random regexp_count regexp_instr
    regexp_like regexp_match regexp_matches regexp_replace regexp_split_to_array regexp_substr
    repeat replace reverse right round rpad rtrim scale sha224 sha256 sha384 sha512 sign sqrt
    split_part starts_with statement_timestamp string_agg string_to_array strpos substr
    substring timeofday to_char to_date to_hex to_number to_timestamp transaction_timestamp
    translate trim trim_scale trunc unistr upper width_bucket bool_and bool_or
    array_agg json_agg jsonb_agg json_object_agg jsonb_object_agg json_build_array
    jsonb_build_array json_build_object jsonb_build_object json_array_length jsonb_array_length
    json_extract_path json_extract_path_text jsonb_extract_path jsonb_extract_path_text
    json_typeof jsonb_typeof to_json to_jsonb jsonb_pretty jsonb_strip_nulls json_strip_nulls
    convert_from convert_to percentile_cont percentile_disc mode stddev variance
    var_pop var_samp stddev_pop stddev_samp corr covar_pop covar_samp
"""

_SQLITE_NAMES = """
    abs char coalesce date datetime format glob hex ifnull iif instr julianday
    length like likelihood likely lower ltrim max min nullif octet_length printf quote random
    replace round rtrim sign soundex strftime substr substring time timediff total trim typeof
    unhex unicode unixepoch unlikely upper group_concat string_agg avg count sum
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10
    log2 mod pi pow power radians sin sinh sqrt tan tanh trunc
    json json_array json_array_length json_extract json_insert json_object json_patch
    json_remove json_replace json_set json_type json_valid json_quote json_group_array
    json_group_object
"""
# ``changes()``, ``last_insert_rowid()``, ``sqlite_*`` and ``load_extension`` are deliberately absent.

_SNOWFLAKE_NAMES = """
    abs array_construct array_size array_contains array_to_string arrayagg array_agg
    as_varchar as_number booland boolor charindex contains convert_timezone date_part
    date_trunc dateadd datediff dayname decode div0 div0null editdistance endswith equal_null
    get get_path hash iff ifnull initcap insert is_null_value left len length listagg lpad
    ltrim md5 md5_hex monthname nvl nvl2 object_construct object_keys parse_json regexp_count
    regexp_instr regexp_like regexp_replace regexp_substr repeat replace reverse right rpad
    rtrim sha1 sha1_hex sha2 sha2_hex split split_part square startswith strtok strtok_to_array
    substr substring sysdate time_slice timeadd timediff timestamp_from_parts
    timestampadd timestampdiff to_array to_boolean to_char to_date to_decimal to_double
    to_number to_numeric to_time to_timestamp to_timestamp_ntz to_varchar to_variant translate
    trim trunc truncate try_cast try_to_date try_to_number try_to_timestamp typeof upper
    uuid_string zeroifnull nullifzero random uniform ratio_to_report conditional_true_event
    conditional_change_event median mode percentile_cont percentile_disc
"""

NAMES: Mapping[str, frozenset[str]] = {
    "duckdb": frozenset(_DUCKDB_NAMES.split()),
    "postgres": frozenset(_POSTGRES_NAMES.split()),
    "sqlite": frozenset(_SQLITE_NAMES.split()),
    "snowflake": frozenset(_SNOWFLAKE_NAMES.split()),
}
"""Functions sqlglot parses as ``exp.Anonymous``, per dialect, by lower-case name. Absent, so
rejected, among others: ``query_to_xml``/``database_to_xml``/``xpath``, ``setval``/``nextval``/
``currval``, ``lo_*``, ``pg_*`` (``pg_sleep``, ``pg_read_file``), ``dblink*``,
``current_setting``/``set_config``, ``txid_*``, ``inet_*``, ``has_*_privilege``,
``getvariable``, ``setseed``, ``stats``, ``write_log``, ``json_serialize_sql``, ``system$*``,
``result_scan``, ``load_extension``."""
