//! Binary COPY against the throwaway server of `scripts/pg.sh`: a column of every supported type
//! read through the decoder, written back through the encoder and compared by the server itself;
//! rows Arrow cannot hold are rejected while the others come through.

use std::pin::pin;

use bytes::BytesMut;
use custos_connectors::postgres::connect;
use custos_connectors::postgres::copy::{Decoder, Encoder, PgType, Rejected};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use crate::postgres::target;

/// A table name no parallel test uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// The table's columns as the decoder and encoder take them (types from the catalog).
async fn columns(client: &Client, table: &str) -> Vec<(String, PgType)> {
    client
        .query(
            "SELECT attname::text, atttypid, atttypmod FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let ty = Type::from_oid(r.get(1)).unwrap();
            let pg = PgType::from_pg(&ty, r.get(2)).unwrap();
            (name, pg)
        })
        .collect()
}

/// `COPY table TO STDOUT` through the decoder: the rows as one batch, and the rejected ones.
async fn copy_out(
    client: &Client,
    table: &str,
    cols: &[(String, PgType)],
    batch_size: usize,
) -> (RecordBatch, Vec<Rejected>) {
    let stream = client
        .copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)"))
        .await
        .unwrap();
    let mut stream = pin!(stream);
    let mut dec = Decoder::new(cols.to_vec(), batch_size);
    let (mut out, mut rejected) = (Vec::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        dec.push(&chunk.unwrap(), &mut out, &mut rejected).unwrap();
    }
    out.extend(dec.finish(&mut rejected).unwrap());
    assert!(
        out.iter()
            .all(|b| b.num_rows() > 0 && b.num_rows() <= batch_size)
    );
    (concat_batches(&dec.schema(), &out).unwrap(), rejected)
}

/// The batch through the encoder into `COPY table (columns) FROM STDIN`.
async fn copy_in(client: &Client, table: &str, cols: &[(String, PgType)], batch: &RecordBatch) {
    let mut enc = Encoder::new(&batch.schema(), cols.to_vec()).unwrap();
    let mut buf = BytesMut::new();
    enc.header(&mut buf);
    enc.encode(batch, &mut buf).unwrap();
    enc.trailer(&mut buf);
    let names: Vec<String> = cols.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    let sql = format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        names.join(", ")
    );
    let sink = client.copy_in::<_, bytes::Bytes>(&sql).await.unwrap();
    let mut sink = pin!(sink);
    sink.send(buf.freeze()).await.unwrap();
    let n = sink.as_mut().finish().await.unwrap();
    assert_eq!(n, batch.num_rows() as u64);
}

const EVERY_TYPE: &str = "id int4, b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, \
    n numeric(12,2), nu numeric, t text, vc varchar(20), ch char(5), j json, jb jsonb, u uuid, \
    bin bytea, d date, tm time, ts timestamp, tz timestamptz, ai int4[], at text[]";

const EVERY_VALUE: &str = r#"
(1, true, -32768, -2147483648, -9223372036854775808, 1.5, -2.25e300, -1234567890.12,
 123.456789, 'héllo ✓', 'varchar ü', 'ab', '{"a": [1, 2]}', '{"b": {"c": null}}',
 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\x00ff10', '2024-02-29', '23:59:59.999999',
 '1999-12-31 23:59:59.5', '2000-01-01 00:00:00+00', '{1,NULL,3}',
 '{"x","",NULL,"with \"quote\", {brace}"}'),
(2, false, 32767, 2147483647, 9223372036854775807, 'Infinity', 'NaN', 9999999999.99,
 -0.0000000001, '', '', '', '[]', '[]', '00000000-0000-0000-0000-000000000000', '\x',
 '0001-01-01', '00:00:00', '0001-01-01 00:00:00', '9999-12-31 23:59:59.999999+00', '{}', '{}'),
(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL),
(4, true, 0, 0, 0, '-0', 2.2250738585072014e-308, 0.01,
 9999999999999999999999999999.9999999999, 'x', 'x', 'x', 'null', '1',
 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\xdeadbeef', '1970-01-01', '12:34:56',
 '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999+00', '{-2147483648}', '{"ü",NULL}')
"#;

#[tokio::test]
async fn every_type_reads_and_writes_back_exactly() {
    let Some(t) = target() else { return };
    let c = connect(&t).await.unwrap();
    let client = &c.client;
    let (src, dst) = (unique("pgcopy_src"), unique("pgcopy_dst"));
    client
        .batch_execute(&format!(
            "CREATE TABLE {src} ({EVERY_TYPE}); CREATE TABLE {dst} ({EVERY_TYPE});
             INSERT INTO {src} VALUES {EVERY_VALUE};"
        ))
        .await
        .unwrap();
    let cols = columns(client, &src).await;
    assert_eq!(cols.len(), 22);
    assert_eq!(
        cols[7].1,
        PgType::Numeric {
            precision: 12,
            scale: 2,
            constrained: true
        }
    );

    let (batch, rejected) = copy_out(client, &src, &cols, 3).await;
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(batch.num_rows(), 4);
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let ids = col("id");
    assert_eq!(
        ids.as_primitive::<Int32Type>().values().as_ref(),
        [1, 2, 3, 4]
    );
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(0), i16::MIN);
    assert_eq!(col("i8").as_primitive::<Int64Type>().value(1), i64::MAX);
    assert_eq!(
        col("f4").as_primitive::<Float32Type>().value(1),
        f32::INFINITY
    );
    assert!(col("f8").as_primitive::<Float64Type>().value(1).is_nan());
    let n = col("n");
    let n = n.as_primitive::<Decimal128Type>();
    assert_eq!(
        (n.value(0), n.value(1), n.value(3)),
        (-123_456_789_012, 999_999_999_999, 1)
    );
    let nu = col("nu");
    let nu = nu.as_primitive::<Decimal128Type>();
    assert_eq!(nu.value(0), 1_234_567_890_000);
    assert_eq!(nu.value(1), -1);
    assert_eq!(nu.value(3), 10i128.pow(38) - 1);
    let text = |name: &str, row: usize| col(name).as_string::<i32>().value(row).to_string();
    assert_eq!(text("t", 0), "héllo ✓");
    assert_eq!(text("vc", 0), "varchar ü");
    assert_eq!(text("ch", 0), "ab   ");
    assert_eq!(text("j", 0), r#"{"a": [1, 2]}"#);
    assert_eq!(text("jb", 0), r#"{"b": {"c": null}}"#);
    assert_eq!(text("u", 0), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    let bin = col("bin");
    assert_eq!(bin.as_binary::<i32>().value(0), [0, 255, 16]);
    assert_eq!(bin.as_binary::<i32>().value(1), [] as [u8; 0]);
    let d = col("d");
    assert_eq!(d.as_primitive::<Date32Type>().value(0), 19_782);
    assert_eq!(d.as_primitive::<Date32Type>().value(1), -719_162);
    let tm = col("tm");
    assert_eq!(
        tm.as_primitive::<Time64MicrosecondType>().value(0),
        86_399_999_999
    );
    let ts = col("ts");
    let ts = ts.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(0), 946_684_799_500_000);
    assert_eq!(ts.value(1), -62_135_596_800_000_000);
    let tz = col("tz");
    let tz = tz.as_primitive::<TimestampMicrosecondType>();
    assert_eq!(tz.value(0), 946_684_800_000_000);
    assert_eq!(tz.value(3), -1);
    assert_eq!(tz.timezone(), Some("UTC"));
    let ai = col("ai");
    let first = ai.as_list::<i32>().value(0);
    let first = first.as_primitive::<Int32Type>();
    assert_eq!(first.iter().collect::<Vec<_>>(), [Some(1), None, Some(3)]);
    assert_eq!(ai.as_list::<i32>().value_length(1), 0);
    let at = col("at");
    let first = at.as_list::<i32>().value(0);
    assert_eq!(
        first.as_string::<i32>().iter().collect::<Vec<_>>(),
        [Some("x"), Some(""), None, Some("with \"quote\", {brace}")]
    );
    // The all-NULL row.
    for (i, f) in batch.schema().fields().iter().enumerate().skip(1) {
        assert!(batch.column(i).is_null(2), "{}", f.name());
    }

    copy_in(client, &dst, &cols, &batch).await;
    // json has no equality operator: compare its text, which json keeps verbatim.
    let select = |table: &str| {
        format!(
            "SELECT id, b, i2, i4, i8, f4, f8, n, nu, t, vc, ch, j::text, jb, u, bin, d, tm, \
             ts, tz, ai, at FROM {table}"
        )
    };
    for (a, b) in [(&src, &dst), (&dst, &src)] {
        let sql = format!("{} EXCEPT ALL {}", select(a), select(b));
        let diff = client.query(&sql, &[]).await.unwrap();
        assert!(diff.is_empty(), "{} rows of {a} are not in {b}", diff.len());
    }
    let count: i64 = client
        .query_one(&format!("SELECT count(*) FROM {dst}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4);
    // And read back once more, the same batch.
    let (again, _) = copy_out(client, &dst, &cols, 100).await;
    assert_eq!(again.column(0).to_data(), batch.column(0).to_data());
    assert_eq!(again.column(12).to_data(), batch.column(12).to_data());

    client
        .batch_execute(&format!("DROP TABLE {src}; DROP TABLE {dst};"))
        .await
        .unwrap();
}

#[tokio::test]
async fn rows_arrow_cannot_hold_are_rejected_and_the_rest_come_through() {
    let Some(t) = target() else { return };
    let c = connect(&t).await.unwrap();
    let client = &c.client;
    let table = unique("pgcopy_nan");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int4, n numeric(10,2), nu numeric, d date);
             INSERT INTO {table} VALUES
               (1, 1.5, 0.5, '2020-01-01'),
               (2, 'NaN', 1, '2020-01-01'),
               (3, 2, 0.000000000001, '2020-01-01'),
               (4, -2.25, 'Infinity', NULL),
               (5, 3, 1, 'infinity'),
               (6, 4, 2, '2020-01-02');"
        ))
        .await
        .unwrap();
    let cols = columns(client, &table).await;
    let (batch, rejected) = copy_out(client, &table, &cols, 1).await;
    let ids = batch.column(0).as_primitive::<Int32Type>();
    assert_eq!(ids.values().as_ref(), [1, 6]);
    let n = batch.column(1).as_primitive::<Decimal128Type>();
    assert_eq!((n.value(0), n.value(1)), (150, 400));

    let got: Vec<_> = rejected
        .iter()
        .map(|r| (r.row, r.column.as_str()))
        .collect();
    assert_eq!(got, [(2, "n"), (3, "nu"), (4, "nu"), (5, "d")]);
    assert!(rejected[0].reason.contains("NaN"), "{}", rejected[0].reason);
    assert!(rejected[1].reason.contains("digits after the point"));
    assert!(rejected[2].reason.contains("infinity"));
    assert!(rejected[3].reason.contains("infinite"));
    assert_eq!(rejected[0].data["id"], "AAAAAg==");
    assert_eq!(rejected[0].data["n"], "AAAAAMAAAAA=");
    assert_eq!(rejected[2].data["d"], serde_json::Value::Null);
    // Reasons never hold the value.
    assert!(
        rejected
            .iter()
            .all(|r| !r.reason.contains("0.000000000001"))
    );

    client
        .batch_execute(&format!("DROP TABLE {table};"))
        .await
        .unwrap();
}

#[tokio::test]
async fn arrays_of_varchar_need_their_element_type() {
    let Some(t) = target() else { return };
    let c = connect(&t).await.unwrap();
    let client = &c.client;
    let table = unique("pgcopy_vc");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (a varchar(5)[]);
             INSERT INTO {table} VALUES ('{{x,NULL,yy}}'), (NULL), ('{{}}');"
        ))
        .await
        .unwrap();
    let cols = columns(client, &table).await;
    assert_eq!(cols[0].1, PgType::Array(Box::new(PgType::Text)));
    let (batch, _) = copy_out(client, &table, &cols, 10).await;
    assert_eq!(batch.num_rows(), 3);

    // Labelled text[], the server refuses the elements...
    let mut enc = Encoder::new(&batch.schema(), cols.clone()).unwrap();
    let mut buf = BytesMut::new();
    enc.header(&mut buf);
    enc.encode(&batch, &mut buf).unwrap();
    enc.trailer(&mut buf);
    let sql = format!("COPY {table} (a) FROM STDIN (FORMAT binary)");
    let sink = client.copy_in::<_, bytes::Bytes>(&sql).await.unwrap();
    let mut sink = pin!(sink);
    let refused = match sink.send(buf.freeze()).await {
        Err(e) => e,
        Ok(()) => sink.as_mut().finish().await.unwrap_err(),
    };
    let refused = format!("{refused:?}");
    assert!(refused.contains("element type"), "{refused}");

    // ...labelled with the column's element type, it takes them.
    let types: Vec<Type> = client
        .prepare(&format!("SELECT a FROM {table}"))
        .await
        .unwrap()
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let mut enc = Encoder::new(&batch.schema(), cols.clone())
        .unwrap()
        .with_element_types(&types);
    let mut buf = BytesMut::new();
    enc.header(&mut buf);
    enc.encode(&batch, &mut buf).unwrap();
    enc.trailer(&mut buf);
    let sink = client.copy_in::<_, bytes::Bytes>(&sql).await.unwrap();
    let mut sink = pin!(sink);
    sink.send(buf.freeze()).await.unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 3);
    let n: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE a = '{{x,NULL,yy}}'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    client
        .batch_execute(&format!("DROP TABLE {table};"))
        .await
        .unwrap();
}
