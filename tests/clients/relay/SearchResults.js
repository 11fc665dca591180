// The search as a Relay pagination fragment: usePaginationFragment pages it with first/after, and the
// connection's records are kept per search (query, filter, order).
import { graphql } from 'relay-runtime';

export const searchResultsFragment = graphql`
  fragment SearchResults_query on Query
  @argumentDefinitions(
    query: { type: "String!" }
    filter: { type: "SearchFilter" }
    orderBy: { type: "SearchOrder", defaultValue: NEWEST }
    count: { type: "Int", defaultValue: 10 }
    cursor: { type: "String" }
  )
  @refetchable(queryName: "SearchResultsPaginationQuery") {
    search(query: $query, filter: $filter, orderBy: $orderBy, first: $count, after: $cursor)
    @connection(key: "SearchResults_search", filters: ["query", "filter", "orderBy"]) {
      totalCount {
        value
        exact
      }
      edges {
        headline
        rank
        node {
          id
          ...PageCard_page
        }
      }
    }
  }
`;
