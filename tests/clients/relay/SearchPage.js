// The search page's entry query.
import { graphql } from 'relay-runtime';

export const searchPageQuery = graphql`
  query SearchPageQuery($query: String!, $filter: SearchFilter, $orderBy: SearchOrder) {
    ...SearchResults_query @arguments(query: $query, filter: $filter, orderBy: $orderBy)
    ...TownList_query @arguments(state: null)
  }
`;
