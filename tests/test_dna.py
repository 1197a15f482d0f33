"""Barcode hygiene and tokenisers, on hand-made and real BOLD sequences."""

from __future__ import annotations

import itertools

import pytest

from clibd_core.dna import (
    BarcodeBertTokenizer,
    BarcodeError,
    NucleotideTokenizer,
    check_barcodes,
    clean_sequence,
    inspect_barcode,
    reverse_complement,
)

# A real insect COI-5P barcode (Abax parallelus, BOLD EUCAR584-10, 658 bp), on the coding strand.
COI = (
    "AACATTATATTTTATTTTTGGTGCATGAGCAGGAATAGTAGGAACATCCTTAAGAATACTAATTCGAGCTGAATTAGGAAATCCTGGATCATTAATTGGTGACGA"
    "TCAAATTTATAATGTAATTGTCACTGCACATGCTTTTGTAATAATTTTTTTTATAGTTATGCCAATTATAATTGGAGGATTTGGAAATTGATTAGTTCCTTTAAT"
    "ATTAGGAGCTCCTGATATAGCCTTTCCTCGAATGAATAACATGAGATTTTGACTGCTCCCTCCTTCATTGACCTTGCTCCTTATAAGCAGCATAGTTGAAAGAGG"
    "TACTGGCACAGGATGAACAGTTTACCCCCCCCTTTCTAGTAATATTGCCCATAGAGGAGCCTCGGTTGATTTAGCTATTTTTAGTCTTCATTTAGCTGGAATTTC"
    "CTCAATTTTAGGAGCTGTAAATTTTATCACTACAATTATTAATATACGATCAGTAGGTATAACATTTGATCGAATACCTTTATTTGTTTGATCAGTAGGAATTAC"
    "TGCCCTATTACTACTGTTATCACTACCTGTATTAGCAGGAGCTATCACAATACTTCTAACAGATCGAAATTTTAATACTTCATTTTTTGACCCAGCTGGAGGTGG"
    "AGATCCTATTCTCTATCAACACTTATTT"
)


def test_raw_sequence_is_cleaned_case_u_gaps_digits_whitespace():
    messy = "1 " + COI[:60].lower().replace("t", "u") + "\n61 --" + COI[60:200] + "..\n  " + COI[200:]
    (report,) = check_barcodes(messy)
    assert report.ok and report.id == "query"
    assert report.sequence == COI and report.length == len(COI)
    assert not report.reverse_complemented


def test_fasta_records_keep_their_ids_and_bold_headers_are_cut_at_the_bar():
    text = f">ABC-1|Abax parallelus|COI-5P\n{COI[:300]}\n{COI[300:]}\n>second record\n{COI}\n"
    reports = check_barcodes(text)
    assert [r.id for r in reports] == ["ABC-1", "second"]
    assert all(r.ok and r.sequence == COI for r in reports)


def test_reverse_complement_is_detected_and_undone():
    (report,) = check_barcodes(reverse_complement(COI))
    assert report.ok and report.reverse_complemented
    assert report.sequence == COI
    assert "reading frame" in report.orientation


def test_iupac_codes_are_kept_counted_and_flagged_above_one_percent():
    seq = COI[:100] + "RYKMSWN" + COI[107:]
    report = inspect_barcode("amb", seq)
    assert report.ok
    assert report.ambiguous_percent == pytest.approx(100 * 7 / len(COI))
    assert any("ambiguous" in w for w in report.warnings)
    assert not any("ambiguous" in w for w in inspect_barcode("clean", COI).warnings)


def test_stop_codon_in_frame_is_flagged():
    report = inspect_barcode("coi", COI)
    frame = report.frame
    assert report.stop_codons == 0
    position = frame + 3 * 60  # replace one in-frame codon with TAA
    broken = COI[:position] + "TAA" + COI[position + 3 :]
    flagged = inspect_barcode("numt", broken)
    assert flagged.stop_codons == 1 and not flagged.reverse_complemented
    assert any("stop codon" in w for w in flagged.warnings)


def test_short_barcode_and_primer_tail_are_flagged():
    assert inspect_barcode("coi", COI).warnings == []
    short = inspect_barcode("short", COI[:300])
    assert short.ok and any("shorter than a full barcode" in w for w in short.warnings)
    tailed = inspect_barcode("primed", "GGTCAACAAATCATAAAGATATTGG" + COI)
    assert any("LCO1490" in w for w in tailed.warnings)
    assert not any("primer" in w for w in inspect_barcode("coi", COI).warnings)


def test_a_primer_is_found_with_up_to_three_substitutions_a_few_bases_inside_the_read():
    """The primer search tolerates sequencing errors and a tag before the primer, but not a random read."""
    primer = "GGTCAACAAATCATAAAGATATTGG"  # LCO1490

    def substituted(positions):
        return "".join(
            {"A": "C", "C": "G", "G": "T", "T": "A"}[b] if i in positions else b for i, b in enumerate(primer)
        )

    for tag in ("", "ACGTAC", "TTGACCATGGAC"):
        for positions in ({0, 1, 2}, {0, 12, 24}, {6, 7, 20}):
            read = tag + substituted(positions) + COI
            assert any("LCO1490" in w for w in inspect_barcode("read", read).warnings), (tag, positions)
        read = tag + substituted({0, 6, 12, 18}) + COI
        assert not any("LCO1490" in w for w in inspect_barcode("read", read).warnings), tag


@pytest.mark.parametrize(
    "text, fragment",
    [
        (">prot\nMKVLAAGIVGLLLAVSQEPTFWQRSALLVEGHHVLPPSFQQDKVL" * 3, "not nucleotide codes"),
        (">empty\n\n>next\n" + COI, "empty sequence"),
        (">tiny\n" + COI[:80], "too short"),
        (">huge\n" + "ACGT" * 2600, "far longer"),
        (">ns\n" + "N" * 400, "does not look like a DNA"),
    ],
)
def test_bad_records_are_rejected_with_their_name(text, fragment):
    report = check_barcodes(text)[0]
    assert not report.ok
    assert fragment in report.error
    assert f"'{report.id}'" in report.error


def test_duplicate_ids_reject_only_the_repeat_and_keep_the_rest():
    reports = check_barcodes(f">a\n{COI}\n>b\n{COI}\n>a\n{COI}")
    assert [r.ok for r in reports] == [True, True, False]
    assert "duplicate FASTA id" in reports[2].error and "#1" in reports[2].error


def test_clean_sequence_raises_for_single_use():
    with pytest.raises(BarcodeError, match="'q7'"):
        clean_sequence("hello world, this is text", "q7")


def test_orientation_on_real_bold_barcodes(bold_sample):
    correct = total = 0
    for index, row in enumerate(bold_sample):
        flip = index % 2 == 1
        sequence = reverse_complement(row["nucleotides"].upper()) if flip else row["nucleotides"]
        report = inspect_barcode(row["processid"], sequence)
        if report.ok:
            total += 1
            correct += report.reverse_complemented == flip
    assert total > 1900
    assert correct / total >= 0.995


def test_barcodebert_tokeniser_hand_computed_ids():
    tokenizer = BarcodeBertTokenizer()
    assert tokenizer.vocab_size == 1027
    # ids: AAAAA = 3, ACGTA = 3 + (0*256 + 1*64 + 2*16 + 3*4 + 0) = 111, TTTTT = 3 + 1023 = 1026
    ids = tokenizer.encode("AAAAAACGTATTTTT")
    assert len(ids) == 133
    assert ids[:4] == [0, 3, 111, 1026]
    assert ids[4:] == [2] * 129  # padding N-5-mers are <UNK>
    # Non-ACGT letters (and lower case, as the official pipeline does not upper-case) give <UNK>
    assert tokenizer.encode("ACGTNacgta" + "A" * 650)[:3] == [0, 2, 2]
    # Cut at 660 nt: the 133rd id is the 5-mer at 655..659
    assert tokenizer.encode("C" * 655 + "GGGGG" + "TTTTT")[-1] == 3 + int("22222", 4)
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=5)]
    assert [tokenizer.vocab[k] for k in kmers] == list(range(3, 1027))


def test_nucleotide_tokeniser_ids_and_lengths():
    tokenizer = NucleotideTokenizer(max_len=8)
    ids, lengths = tokenizer.encode_batch(["ACGTN", "acgtRYACGTAC"])
    assert ids.tolist() == [[1, 2, 3, 4, 5, 0, 0, 0], [1, 2, 3, 4, 5, 5, 1, 2]]
    assert lengths.tolist() == [5, 8]
