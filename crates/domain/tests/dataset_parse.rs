//! Dataset parsing and validation: every format, every GLUE layout, every error kind.

use rankfit_domain::dataset::{
    self, parse, split::hashed_split, DataFormat, GlueTask, InvalidDataset, LineError, ParseOptions, ParsedDataset, Split, Target,
    MAX_ERRORS,
};
use rankfit_domain::task::TaskFamily;

fn opts(format: DataFormat, family: TaskFamily) -> ParseOptions {
    ParseOptions::new(format, family)
}

fn ok(bytes: &str, o: &ParseOptions) -> ParsedDataset {
    match parse(bytes.as_bytes(), o) {
        Ok(p) => p,
        Err(e) => panic!("expected success, got {:#?}", e.errors),
    }
}

fn err(bytes: &[u8], o: &ParseOptions) -> Vec<LineError> {
    match parse(bytes, o) {
        Ok(p) => panic!("expected an error, parsed {} rows", p.examples.len()),
        Err(InvalidDataset { errors }) => errors,
    }
}

/// Asserts that some error is on `line` and mentions `needle`.
fn has(errors: &[LineError], line: usize, needle: &str) {
    assert!(
        errors.iter().any(|e| e.line == line && e.message.contains(needle)),
        "no error on line {line} containing {needle:?} in {errors:#?}"
    );
}

fn class(e: &dataset::Example) -> &str {
    match &e.target {
        Target::Class(c) => c,
        other => panic!("not a class: {other:?}"),
    }
}

// ---------------------------------------------------------------- JSONL

#[test]
fn jsonl_classification_with_splits_and_pairs() {
    let src = r#"{"text": "good movie", "label": "positive", "split": "train"}
{"sentence1": "a", "sentence2": "b", "label": "negative", "split": "dev"}

{"sentence": "meh", "text_pair": "ok", "label": "negative", "split": "TEST"}
"#;
    let p = ok(src, &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(p.examples.len(), 3);
    assert_eq!(p.label_set, vec!["negative", "positive"]);
    assert_eq!(p.examples[0].split, Split::Train);
    assert_eq!(p.examples[1].split, Split::Validation);
    assert_eq!(p.examples[1].text_b.as_deref(), Some("b"));
    assert_eq!(p.examples[2].split, Split::Test);
    assert_eq!(p.examples[2].text_a, "meh");
    assert_eq!(p.report.rows, 3);
    assert_eq!(p.report.rows_per_split["train"], 1);
    assert_eq!(p.report.rows_per_split["validation"], 1);
    assert_eq!(p.report.label_distribution["negative"], 2);
    assert_eq!(p.report.preview.len(), 3);
}

#[test]
fn jsonl_integer_labels_sort_numerically() {
    let mut src = String::new();
    for i in 0..11 {
        src.push_str(&format!("{{\"text\": \"t{i}\", \"label\": {i}}}\n"));
    }
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Classification);
    o.default_split = Some(Split::Train);
    let p = ok(&src, &o);
    assert_eq!(p.label_set, (0..11).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(class(&p.examples[10]), "10");
}

#[test]
fn jsonl_column_overrides() {
    let src = "{\"q\": \"why?\", \"ctx\": \"because\", \"y\": \"yes\"}\n{\"q\": \"how?\", \"ctx\": \"so\", \"y\": \"no\"}\n";
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Classification);
    o.text_column = Some("q".into());
    o.text_pair_column = Some("ctx".into());
    o.label_column = Some("y".into());
    o.default_split = Some(Split::Train);
    let p = ok(src, &o);
    assert_eq!(p.examples[0].text_a, "why?");
    assert_eq!(p.examples[0].text_b.as_deref(), Some("because"));
    assert_eq!(p.label_set, vec!["no", "yes"]);
}

#[test]
fn jsonl_regression_score_or_label() {
    let src = "{\"text\": \"a\", \"text_pair\": \"b\", \"score\": 3.5}\n{\"text\": \"c\", \"text_pair\": \"d\", \"label\": \"1.25\"}\n";
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Regression);
    o.default_split = Some(Split::Train);
    let p = ok(src, &o);
    assert_eq!(p.examples[0].target, Target::Score(3.5));
    assert_eq!(p.examples[1].target, Target::Score(1.25));
    assert!(p.label_set.is_empty());
}

#[test]
fn jsonl_summarization() {
    let src = "{\"document\": \"A long article.\", \"summary\": \"Short.\"}\n";
    let p = ok(src, &opts(DataFormat::Jsonl, TaskFamily::Summarization));
    assert_eq!(p.examples[0].target, Target::Text("Short.".into()));
    // A single hashed row always lands in train.
    assert_eq!(p.examples[0].split, Split::Train);
}

#[test]
fn jsonl_instruction_alpaca_and_chat() {
    let src = r#"{"instruction": "Add", "input": "2 and 2", "output": "4"}
{"instruction": "Say hi", "input": "", "output": "hi"}
{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
"#;
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Instruction);
    o.default_split = Some(Split::Train);
    let p = ok(src, &o);
    assert_eq!(p.examples[0].text_b.as_deref(), Some("2 and 2"));
    assert_eq!(p.examples[1].text_b, None);
    assert_eq!(p.examples[2].text_a, "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
    assert_eq!(p.examples[2].target, Target::Text("Hello!".into()));
}

#[test]
fn jsonl_chat_multi_turn_uses_last_assistant_and_warns_on_trailing() {
    let src = r#"{"messages": [{"role": "user", "content": "1"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "2"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "3"}]}"#;
    let p = ok(src, &opts(DataFormat::Jsonl, TaskFamily::Instruction));
    assert_eq!(p.examples[0].text_a, "<|user|>\n1\n<|assistant|>\na\n<|user|>\n2\n<|assistant|>\n");
    assert_eq!(p.examples[0].target, Target::Text("b".into()));
    assert!(p.report.warnings.iter().any(|w| w.line == 1 && w.message.contains("after the last assistant")));
}

#[test]
fn jsonl_chat_errors() {
    let src = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n{\"messages\": \"hi\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Instruction));
    has(&e, 1, "no message with role \"assistant\"");
    has(&e, 2, "messages[0] must be an object with string fields");
    has(&e, 3, "must be an array");
}

// ---------------------------------------------------------------- error kinds

#[test]
fn invalid_utf8_reports_its_line() {
    let mut bytes = b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": 0}\n{\"text\": \"".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\", \"label\": 1}\n");
    let e = err(&bytes, &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(e.len(), 1);
    has(&e, 3, "not valid UTF-8");
    assert!(e[0].message.contains("0xFF"), "{e:?}");
}

#[test]
fn invalid_json_and_non_objects() {
    let src = "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\" \"label\": 0}\n[1, 2]\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 2, "invalid JSON at column 14: expected `,` or `}`");
    has(&e, 3, "expected a JSON object");
}

#[test]
fn empty_text_and_missing_text() {
    let src = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"  \", \"label\": \"y\"}\n{\"body\": \"c\", \"label\": \"y\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 2, "field \"text\" is empty");
    has(&e, 3, "field \"text\" (or \"sentence\", \"sentence1\") is missing");
    has(&e, 3, "\"body\"");
}

#[test]
fn missing_label_lists_valid_labels() {
    let src = "{\"text\": \"a\", \"label\": \"positive\"}\n{\"text\": \"b\", \"label\": \"negative\"}\n{\"text\": \"c\"}\n{\"text\": \"d\", \"label\": \"\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(e[0].line, 3);
    assert_eq!(e[0].message, "field \"label\" is missing; expected one of the labels [\"negative\", \"positive\"]");
    has(&e, 4, "field \"label\" is empty");
}

#[test]
fn non_numeric_and_nan_scores() {
    let src = "{\"text\": \"a\", \"score\": 1}\n{\"text\": \"b\", \"score\": \"high\"}\n{\"text\": \"c\", \"score\": \"NaN\"}\n{\"text\": \"d\", \"score\": [1]}\n{\"text\": \"e\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Regression));
    has(&e, 2, "not a number");
    has(&e, 3, "NaN");
    has(&e, 4, "must be a number");
    has(&e, 5, "field \"score\" (or \"label\") is missing");
}

#[test]
fn inconsistent_label_types() {
    let src = "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\", \"label\": \"0\"}\n{\"text\": \"c\", \"label\": 0.5}\n{\"text\": \"d\", \"label\": true}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 2, "label \"0\" is a string, but the label at line 1 is an integer");
    has(&e, 3, "not a class label");
    has(&e, 4, "is a boolean");
}

#[test]
fn fewer_than_two_labels() {
    let src = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 0, "at least 2 distinct labels, found [\"x\"]");
}

#[test]
fn zero_rows() {
    let e = err(b"\n\n", &opts(DataFormat::Jsonl, TaskFamily::Summarization));
    has(&e, 0, "no examples");
    let e = err(b"text,label\n", &opts(DataFormat::Csv, TaskFamily::Summarization));
    has(&e, 0, "no examples");
    let e = err(b"", &opts(DataFormat::Csv, TaskFamily::Classification));
    has(&e, 0, "empty");
}

#[test]
fn no_training_rows() {
    let src = "{\"text\": \"a\", \"label\": \"x\", \"split\": \"test\"}\n{\"text\": \"b\", \"label\": \"y\", \"split\": \"validation\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 0, "no training rows");
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Summarization);
    o.default_split = Some(Split::Test);
    let e = err(b"{\"document\": \"d\", \"summary\": \"s\"}\n", &o);
    has(&e, 0, "every row was assigned to test");
}

#[test]
fn unknown_split_value() {
    let src = "{\"text\": \"a\", \"label\": \"x\", \"split\": \"holdout\"}\n{\"text\": \"b\", \"label\": \"y\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 1, "field \"split\" is \"holdout\"");
}

#[test]
fn errors_are_capped_with_a_count() {
    let src: String = (0..120).map(|i| format!("{{\"text\": \"\", \"label\": \"{}\"}}\n", i % 2)).collect();
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(e.len(), MAX_ERRORS + 1);
    assert_eq!(e[0].line, 1);
    assert_eq!(e[MAX_ERRORS - 1].line, 50);
    assert_eq!(e[MAX_ERRORS].message, "... and 70 more problems");
}

#[test]
fn text_field_of_wrong_type() {
    let src = "{\"text\": 5, \"label\": \"x\"}\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Classification));
    has(&e, 1, "field \"text\" must be a string, found a number");
}

#[test]
fn oversized_field_is_an_error() {
    let big = "x".repeat(dataset::MAX_FIELD_BYTES + 1);
    let src = format!("{{\"document\": \"{big}\", \"summary\": \"s\"}}\n");
    let e = err(src.as_bytes(), &opts(DataFormat::Jsonl, TaskFamily::Summarization));
    has(&e, 1, "more than the limit");
}

// ---------------------------------------------------------------- warnings, splits, report

#[test]
fn warnings_for_duplicates_conflicts_and_long_texts() {
    let long = "word ".repeat(dataset::LONG_TEXT_CHARS / 5 + 10);
    let src = format!(
        "{{\"text\": \"a\", \"label\": \"x\"}}\n{{\"text\": \"a\", \"label\": \"x\"}}\n{{\"text\": \"a\", \"label\": \"y\"}}\n{{\"text\": \"{long}\", \"label\": \"y\"}}\n"
    );
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Classification);
    o.default_split = Some(Split::Train);
    let p = ok(&src, &o);
    let w = &p.report.warnings;
    assert!(w.iter().any(|w| w.line == 2 && w.message.contains("duplicate of line 1")), "{w:?}");
    assert!(w.iter().any(|w| w.line == 3 && w.message.contains("different target")), "{w:?}");
    assert!(w.iter().any(|w| w.line == 4 && w.message.contains("very long")), "{w:?}");
}

#[test]
fn hashed_split_is_deterministic_and_validation_nonempty() {
    let src: String = (0..40).map(|i| format!("{{\"text\": \"sentence {i}\", \"label\": \"{}\"}}\n", i % 2)).collect();
    let o = opts(DataFormat::Jsonl, TaskFamily::Classification);
    let a = ok(&src, &o);
    let b = ok(&src, &o);
    assert_eq!(a, b);
    assert!(a.report.rows_per_split["validation"] >= 1);
    assert!(a.report.rows_per_split["train"] >= 1);
    for e in &a.examples {
        if e.split != Split::Validation {
            assert_eq!(e.split, hashed_split(&e.text_a, e.text_b.as_deref()));
        }
    }
    // Ten rows is enough to guarantee a validation row, whatever the hashes say.
    for seed in 0..30 {
        let src: String = (0..10).map(|i| format!("{{\"text\": \"s{seed} r{i}\", \"label\": \"{}\"}}\n", i % 2)).collect();
        let p = ok(&src, &o);
        assert!(p.report.rows_per_split["validation"] >= 1, "seed {seed}");
        assert!(p.report.rows_per_split["train"] >= 1, "seed {seed}");
    }
}

#[test]
fn default_split_applies_to_unplaced_rows_only() {
    let src = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"y\", \"split\": \"val\"}\n";
    let mut o = opts(DataFormat::Jsonl, TaskFamily::Classification);
    o.default_split = Some(Split::Train);
    let p = ok(src, &o);
    assert_eq!(p.examples[0].split, Split::Train);
    assert_eq!(p.examples[1].split, Split::Validation);
    assert_eq!(p.split(Split::Validation).count(), 1);
}

#[test]
fn preview_holds_first_five() {
    let src: String = (0..9).map(|i| format!("{{\"text\": \"t{i}\", \"label\": \"{}\"}}\n", i % 3)).collect();
    let p = ok(&src, &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(p.report.preview.len(), 5);
    assert_eq!(p.report.preview[4].text_a, "t4");
    assert_eq!(p.label_set, vec!["0", "1", "2"]);
    assert_eq!(p.report.label_distribution.values().sum::<usize>(), 9);
}

#[test]
fn byte_order_mark_and_crlf_are_accepted() {
    let src = "\u{feff}{\"text\": \"a\", \"label\": \"x\"}\r\n{\"text\": \"b\", \"label\": \"y\"}\r\n";
    let p = ok(src, &opts(DataFormat::Jsonl, TaskFamily::Classification));
    assert_eq!(p.examples.len(), 2);
}

// ---------------------------------------------------------------- CSV

#[test]
fn csv_with_quotes_commas_and_newlines() {
    let src = "text,text_pair,label,split\n\"He said \"\"hi\"\", then left\",other,pos,train\nplain,,neg,validation\n\"multi\nline\",x,neg,train\n";
    let p = ok(src, &opts(DataFormat::Csv, TaskFamily::Classification));
    assert_eq!(p.examples[0].text_a, "He said \"hi\", then left");
    assert_eq!(p.examples[1].text_b, None);
    assert_eq!(p.examples[1].split, Split::Validation);
    assert_eq!(p.examples[2].text_a, "multi\nline");
}

#[test]
fn csv_errors_have_line_numbers() {
    // Line 3 has a wrong column count; the row starting on line 4 spans two lines, so the
    // empty label of the row on line 6 is on line 6.
    let src = "text,label\na,x\nb,y,extra\n\"two\nlines\",y\n,y\nc,\n";
    let e = err(src.as_bytes(), &opts(DataFormat::Csv, TaskFamily::Classification));
    has(&e, 3, "expected 2 comma-separated columns");
    has(&e, 6, "field \"text\" is empty");
    has(&e, 7, "field \"label\" is empty; expected one of the labels [\"x\", \"y\"]");
}

#[test]
fn csv_regression_and_summarization() {
    let p = ok("sentence1,sentence2,score\na,b,4.2\nc,d,0\n", &opts(DataFormat::Csv, TaskFamily::Regression));
    assert_eq!(p.examples[0].target, Target::Score(4.2));
    let e = err(b"sentence1,sentence2,score\na,b,x\n", &opts(DataFormat::Csv, TaskFamily::Regression));
    has(&e, 2, "not a number");
    let p = ok("document,summary\nlong text,short\n", &opts(DataFormat::Csv, TaskFamily::Summarization));
    assert_eq!(p.examples[0].target, Target::Text("short".into()));
}

#[test]
fn csv_duplicate_header_is_an_error() {
    let e = err(b"text,text,label\na,b,c\n", &opts(DataFormat::Csv, TaskFamily::Classification));
    has(&e, 1, "appears twice");
}

// ---------------------------------------------------------------- GLUE TSV

fn glue(task: &str) -> ParseOptions {
    let t = GlueTask::parse(task).unwrap();
    let mut o = opts(DataFormat::GlueTsv, t.task_family());
    o.glue_task = Some(task.to_string());
    o.default_split = Some(Split::Train);
    o
}

#[test]
fn glue_cola_has_no_header() {
    let src = "gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\ngj04\t0\t*\tThey drank the pub.\n";
    let p = ok(src, &glue("cola"));
    assert_eq!(p.examples.len(), 2);
    assert_eq!(p.examples[1].text_a, "They drank the pub.");
    assert_eq!(class(&p.examples[1]), "0");
    assert_eq!(p.label_set, vec!["0", "1"]);
    let e = err(b"index\tsentence\n0\tBill whistled past the house.\n", &glue("cola"));
    has(&e, 1, "test.tsv");
    let e = err(b"gj04\t1\tA sentence.\n", &glue("cola"));
    has(&e, 1, "expected 4 tab-separated columns (source, label, original label, sentence), found 3");
}

#[test]
fn glue_sst2() {
    let src = "sentence\tlabel\nhide new secretions from the parental units \t0\nthe greatest musicians \t1\n";
    let p = ok(src, &glue("sst2"));
    assert_eq!(p.examples[0].text_a, "hide new secretions from the parental units ");
    assert_eq!(class(&p.examples[1]), "1");
    let e = err(b"sentence\tlabel\nfine\t2\n", &glue("sst-2"));
    has(&e, 2, "not a GLUE sst2 label; expected one of [\"0\", \"1\"]");
}

#[test]
fn glue_mrpc_with_bom_and_quotes() {
    let src = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t702876\t702977\tAmrozi accused his brother , whom he called \" the witness \" , of deliberately distorting his evidence .\tReferring to him as only \" the witness \" , Amrozi accused his brother of deliberately distorting his evidence .\n0\t2108705\t2108831\tYucaipa owned Dominick 's before selling the chain to Safeway in 1998 for $ 2.5 billion .\tYucaipa bought Dominick 's in 1995 for $ 693 million and sold it to Safeway for $ 1.8 billion in 1998 .\n";
    let p = ok(src, &glue("mrpc"));
    assert_eq!(p.examples.len(), 2);
    assert!(p.examples[0].text_a.contains("\" the witness \""));
    assert!(p.examples[0].text_b.as_deref().unwrap().starts_with("Referring"));
    assert_eq!(class(&p.examples[0]), "1");
}

#[test]
fn glue_qqp_and_its_short_rows() {
    let src = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n133273\t213221\t213222\tHow is the life of a math student? Could you describe your own experiences?\tWhich level of prepration is enough for the exam jlpt5?\t0\n402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1\n363362\t\"What's\t0\n";
    let e = err(src.as_bytes(), &glue("qqp"));
    assert_eq!(e.len(), 1);
    has(&e, 4, "expected 6 tab-separated columns (id, qid1, qid2, question1, question2, is_duplicate), found 3");
    let good: String = src.lines().take(3).map(|l| format!("{l}\n")).collect();
    let p = ok(&good, &glue("qqp"));
    assert_eq!(p.examples[1].text_b.as_deref(), Some("How do you control your horniness?"));
    assert_eq!(class(&p.examples[1]), "1");
}

#[test]
fn glue_stsb_is_regression() {
    let src = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\tAn air plane is taking off.\t5.000\n1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a large flute.\tA man is playing a flute.\t3.800\n";
    let p = ok(src, &glue("stsb"));
    assert_eq!(p.task_family, TaskFamily::Regression);
    assert_eq!(p.examples[1].target, Target::Score(3.8));
    assert_eq!(p.examples[0].text_b.as_deref(), Some("An air plane is taking off."));
    let mut o = glue("stsb");
    o.task_family = TaskFamily::Classification;
    let e = err(src.as_bytes(), &o);
    has(&e, 0, "choose task family regression");
}

#[test]
fn glue_mnli_train_and_dev_layouts() {
    let train = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n0\t31193\t31193n\tgovernment\t( ( Conceptually ...\t( ( Product ...\t(ROOT ...)\t(ROOT ...)\tConceptually cream skimming has two basic dimensions - product and geography.\tProduct and geography are what make cream skimming work. \tneutral\tneutral\n1\t101457\t101457e\ttelephone\t( you ...\t( You ...\t(ROOT ...)\t(ROOT ...)\tyou know during the season and i guess at at your level uh you lose them to the next level\tYou lose the things to the following level if the people recall.\tentailment\tentailment\n";
    let p = ok(train, &glue("mnli"));
    assert_eq!(class(&p.examples[0]), "neutral");
    assert_eq!(p.label_set, vec!["contradiction", "entailment", "neutral"]);
    let dev = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n0\t63735\t63735n\tslate\t(...)\t(...)\t(...)\t(...)\tThe new rights are nice enough\tEveryone really likes the newest benefits \tneutral\tentailment\tneutral\tneutral\tneutral\tneutral\n";
    let p = ok(dev, &glue("mnli"));
    assert_eq!(class(&p.examples[0]), "neutral");
    assert_eq!(p.examples[0].text_a, "The new rights are nice enough");
}

#[test]
fn glue_qnli_rte_wnli() {
    let qnli = "index\tquestion\tsentence\tlabel\n0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it, ...\tnot_entailment\n1\tWhich missile batteries often have individual launchers?\tWhen MANPADS is operated by specialists, ...\tentailment\n";
    let p = ok(qnli, &glue("qnli"));
    assert_eq!(p.examples[0].text_a, "When did the third Digimon series begin?");
    assert_eq!(p.label_set, vec!["entailment", "not_entailment"]);
    let rte = "index\tsentence1\tsentence2\tlabel\n0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq.\tnot_entailment\n1\tA place of sorrow, after Pope John Paul II died, became a place of celebration.\tPope Benedict XVI is the new leader of the Roman Catholic Church.\tentailment\n";
    let p = ok(rte, &glue("rte"));
    assert_eq!(class(&p.examples[1]), "entailment");
    let wnli = "index\tsentence1\tsentence2\tlabel\n0\tI stuck a pin through a carrot. When I pulled the pin out, it had a hole.\tThe carrot had a hole.\t1\n1\tJohn couldn't see the stage with Billy in front of him because he is so short.\tJohn is so short.\t1\n2\tThe police arrested all of the gang members.\tThe police were trying to stop the gang.\t0\n";
    let p = ok(wnli, &glue("wnli"));
    assert_eq!(p.label_set, vec!["0", "1"]);
    let e = err(b"index\tsentence1\tsentence2\n0\ta\tb\n", &glue("rte"));
    has(&e, 1, "lacks the GLUE rte column(s) \"label\"");
    has(&e, 1, "test.tsv");
}

#[test]
fn glue_label_set_is_the_task_s_even_if_a_file_lacks_one() {
    let src = "index\tquestion\tsentence\tlabel\n0\tq?\ts.\tentailment\n";
    let p = ok(src, &glue("qnli"));
    assert_eq!(p.label_set, vec!["entailment", "not_entailment"]);
}

#[test]
fn glue_needs_a_known_task() {
    let mut o = opts(DataFormat::GlueTsv, TaskFamily::Classification);
    has(&err(b"a\tb\n", &o), 0, "needs the GLUE task");
    o.glue_task = Some("squad".into());
    has(&err(b"a\tb\n", &o), 0, "unknown GLUE task");
}

// ---------------------------------------------------------------- BIG-bench

#[test]
fn bigbench_target_scores_and_targets() {
    let src = r#"{"canary": "x", "name": "t", "examples": [
        {"input": "Is it wet?", "target_scores": {"yes": 1, "no": 0, "maybe": 0}},
        {"input": "Is it dry?", "target_scores": {"yes": 0, "no": 1, "maybe": 0}}
    ]}"#;
    let p = ok(src, &opts(DataFormat::BigBench, TaskFamily::Classification));
    assert_eq!(class(&p.examples[0]), "yes");
    assert_eq!(class(&p.examples[1]), "no");
    assert_eq!(p.label_set, vec!["maybe", "no", "yes"]);

    let src = r#"{"examples": [{"input": "Summarize: a b c", "target": ["abc", "a-b-c"]}, {"input": "x", "target": "y"}]}"#;
    let p = ok(src, &opts(DataFormat::BigBench, TaskFamily::Summarization));
    assert_eq!(p.examples[0].target, Target::Text("abc".into()));
    let p = ok(src, &opts(DataFormat::BigBench, TaskFamily::Instruction));
    assert_eq!(p.examples[1].target, Target::Text("y".into()));
}

#[test]
fn bigbench_ties_go_to_the_first_choice_in_file_order() {
    let src = r#"{"examples": [{"input": "q1", "target_scores": {"zeta": 1, "alpha": 1, "mid": 0}}, {"input": "q2", "target_scores": {"mid": 1, "alpha": 0, "zeta": 0}}]}"#;
    let p = ok(src, &opts(DataFormat::BigBench, TaskFamily::Classification));
    assert_eq!(class(&p.examples[0]), "zeta");
    assert!(p.report.warnings.iter().any(|w| w.line == 1 && w.message.contains("share the top score")));
}

#[test]
fn bigbench_errors_count_examples_as_lines() {
    let src = r#"{"examples": [
        {"input": "ok", "target_scores": {"a": 1, "b": 0}},
        {"target_scores": {"a": 1, "b": 0}},
        {"input": "x", "target_scores": {"a": "high", "b": 0}},
        {"input": "y"},
        "not an object"
    ]}"#;
    let e = err(src.as_bytes(), &opts(DataFormat::BigBench, TaskFamily::Classification));
    has(&e, 2, "example 2 (in a JSON document the line number is the example's index, from 1): field \"input\" is missing");
    has(&e, 3, "the score of choice \"a\" is \"high\", not a number");
    has(&e, 4, "neither \"target_scores\" nor");
    has(&e, 5, "expected an object");
    let e = err(b"{\"name\": \"x\"}", &opts(DataFormat::BigBench, TaskFamily::Classification));
    has(&e, 0, "no \"examples\" array");
    let e = err(b"{\"examples\": [\n  {\"input\": }\n]}", &opts(DataFormat::BigBench, TaskFamily::Classification));
    has(&e, 2, "not a valid BIG-bench task.json");
    let e = err(b"{\"examples\": []}", &opts(DataFormat::BigBench, TaskFamily::Regression));
    has(&e, 0, "no numeric targets");
}

#[test]
fn bigbench_real_task_excerpt() {
    let bytes = include_bytes!("fixtures/bigbench_epistemic_reasoning_excerpt.json");
    let p = parse(bytes, &opts(DataFormat::BigBench, TaskFamily::Classification)).expect("the real BIG-bench excerpt parses");
    assert_eq!(p.examples.len(), 40);
    assert_eq!(p.label_set, vec!["entailment", "non-entailment"]);
    assert_eq!(p.report.label_distribution["entailment"], 20);
    assert_eq!(p.report.label_distribution["non-entailment"], 20);
    assert_eq!(class(&p.examples[0]), "non-entailment");
    assert!(p.examples[0].text_a.starts_with("Premise: James understands that Charles thinks"));
    assert!(p.report.rows_per_split["validation"] >= 1);
    assert!(p.report.rows_per_split["train"] >= 1);
    assert_eq!(p.report.preview.len(), 5);
    // As an instruction dataset the best choice becomes the reference text.
    let p = parse(bytes, &opts(DataFormat::BigBench, TaskFamily::Instruction)).unwrap();
    assert_eq!(p.examples[0].target, Target::Text("non-entailment".into()));
}

#[test]
fn bigbench_task_prefix_is_the_instruction_of_an_instruction_dataset() {
    // natural_instructions keeps each subtask's definition in task_prefix.
    let bytes = br#"{"task_prefix": "Definition: answer the question. ", "examples": [
        {"input": "Q1?", "target": "A1"}, {"input": "Q2?", "target": ["A2", "other"]}]}"#;
    let p = parse(bytes, &opts(DataFormat::BigBench, TaskFamily::Instruction)).unwrap();
    let q2 = p.examples.iter().find(|e| e.text_b.as_deref() == Some("Q2?")).expect("Q2 is an input");
    assert_eq!(q2.text_a, "Definition: answer the question.");
    assert_eq!(q2.target, Target::Text("A2".into()));
    // Summarization (gem/xsum has an empty task_prefix) keeps the input as the document.
    let p = parse(bytes, &opts(DataFormat::BigBench, TaskFamily::Summarization)).unwrap();
    assert!(p.examples.iter().all(|e| e.text_b.is_none() && e.text_a.starts_with('Q')));
}

#[test]
fn chat_prompts_parse_back_into_turns() {
    let turns = [("system", "Be brief."), ("user", "Line one\n<|not a header\nline three"), ("assistant", "Ok."), ("user", "")];
    let text = dataset::render_chat_prompt(turns);
    let back = dataset::parse_chat_prompt(&text).unwrap();
    assert_eq!(back, turns.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect::<Vec<_>>());
    assert_eq!(dataset::parse_chat_prompt("<|user|>\nno generation prompt\n"), None);
}

// ---------------------------------------------------------------- misc API

#[test]
fn names_round_trip() {
    for t in GlueTask::ALL {
        assert_eq!(GlueTask::parse(t.as_str()), Some(t));
    }
    assert_eq!(GlueTask::parse("STS-B"), Some(GlueTask::Stsb));
    assert_eq!(Split::parse(" Dev "), Some(Split::Validation));
    assert_eq!(Split::parse("holdout"), None);
    let e = dataset::render_chat_prompt([("user", "Hi")]);
    assert_eq!(e, "<|user|>\nHi\n<|assistant|>\n");
}
