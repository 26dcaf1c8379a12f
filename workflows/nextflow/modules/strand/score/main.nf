// strand-score: the variants of one contig (or, with contig '', those on
// contigs missing from the reference, so that none is dropped), as an
// indexed BGZF VCF (.tbi, or .csi past 2^29).
process STRAND_SCORE {
    tag "${meta.id} ${contig ?: 'other contigs'}"
    label 'process_gpu'

    input:
    // The VCF (or BCF) is read from start to end: it needs no index.
    tuple val(meta), path(vcf), val(contig)
    // The FASTA with its indexes: .fai, and .gzi when BGZF-compressed
    // (gzi: [] for a plain FASTA).
    tuple path(fasta), path(fai), path(gzi)
    val model

    output:
    tuple val(meta), val(contig), path("${meta.id}.${contig ?: 'other-contigs'}.vcf.gz"), path("${meta.id}.${contig ?: 'other-contigs'}.vcf.gz.{tbi,csi}"), emit: vcf
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def where = contig ? "-r ${contig}" : "--missing-contigs-only"
    def part = contig ?: 'other-contigs'
    """
    strand-score \\
        -m ${model} \\
        -@ ${task.cpus} \\
        -q \\
        -f ${fasta} \\
        --vcf ${vcf} \\
        ${where} \\
        ${args} \\
        -o ${meta.id}.${part}.vcf.gz

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        strand: \$(strand-score --version | sed 's/^strand-score //')
    END_VERSIONS
    """
}
