// strand-embed: one shard of a genome's contigs, one .npy per contig.
process STRAND_EMBED {
    tag "${meta.id} shard ${shard}/${nshards}"
    label 'process_gpu'

    input:
    // The FASTA with its indexes: .fai, and .gzi when BGZF-compressed
    // (gzi: [] for a plain FASTA); strand reads contigs through them.
    tuple val(meta), path(fasta), path(fai), path(gzi)
    val model
    tuple val(shard), val(nshards)

    output:
    tuple val(meta), path("embed/*.npy"), emit: npy
    tuple val(meta), path("embed/index.shard-*.tsv"), emit: index
    path "versions.yml", emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    strand-embed \\
        -m ${model} \\
        -@ ${task.cpus} \\
        -q \\
        ${fasta} \\
        --format npy \\
        --out-dir embed \\
        --shard ${shard}/${nshards} \\
        --resume \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        strand: \$(strand-embed --version | sed 's/^strand-embed //')
    END_VERSIONS
    """
}
